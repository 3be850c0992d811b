"""The mover's cut of one table's builds: keys built as unique indexes side by side, then attached."""

from __future__ import annotations

from restore_assets.core.mover.builds import (
    ForeignKeyBuild,
    IndexBuild,
    key_as_index,
    plan_builds,
    split_foreign_keys,
)


def test_primary_key_becomes_a_unique_index_and_an_attachment() -> None:
    index, attach = key_as_index(
        'ALTER TABLE ONLY s.t ADD CONSTRAINT "T pkey" PRIMARY KEY (id, "Code")'
        " INCLUDE (note) WITH (fillfactor='70')"
    )
    assert index == (
        'CREATE UNIQUE INDEX "T pkey" ON "s"."t" USING btree ("id", "Code") INCLUDE ("note")'
        " WITH (\"fillfactor\" = '70')"
    )
    assert (
        attach
        == 'ALTER TABLE ONLY "s"."t" ADD CONSTRAINT "T pkey" PRIMARY KEY USING INDEX "T pkey"'
    )


def test_unique_nulls_not_distinct_is_kept() -> None:
    index, attach = key_as_index(
        "ALTER TABLE ONLY s.t ADD CONSTRAINT t_a_key UNIQUE NULLS NOT DISTINCT (a)"
    )
    assert index.endswith("NULLS NOT DISTINCT") and "UNIQUE USING INDEX" in attach


def test_what_cannot_be_attached_as_is_stays_unchanged() -> None:
    for statement in (
        "ALTER TABLE ONLY s.t ADD CONSTRAINT k UNIQUE (a) DEFERRABLE INITIALLY DEFERRED",
        "ALTER TABLE ONLY s.t ADD CONSTRAINT c CHECK (a > 0)",
        "ALTER TABLE ONLY s.t ADD CONSTRAINT x EXCLUDE USING gist (r WITH &&)",
        "ALTER TABLE ONLY s.t ADD CONSTRAINT k UNIQUE USING INDEX k",
        "ALTER TABLE ONLY s.t ADD CONSTRAINT k PRIMARY KEY (a) USING INDEX TABLESPACE ts",
        "ALTER TABLE ONLY s.t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES s.u (id)",
        "CREATE INDEX i ON s.t (a)",
    ):
        assert key_as_index(statement) is None, statement


def test_plan_keeps_settings_with_each_build_and_the_rest_in_dump_order() -> None:
    statements = [
        "SET default_tablespace = ''",
        "ALTER TABLE ONLY s.t ADD CONSTRAINT t_pkey PRIMARY KEY (id)",
        "SET default_tablespace = fast",
        "CREATE INDEX t_a_idx ON s.t USING btree (lower(a))",
        "ALTER TABLE ONLY s.t ADD CONSTRAINT t_a_check CHECK (a <> '')",
    ]
    plan = plan_builds(statements, "s")
    assert plan.indexes == [
        IndexBuild(
            "t_pkey", [statements[0], 'CREATE UNIQUE INDEX "t_pkey" ON "s"."t" USING btree ("id")']
        ),
        IndexBuild("t_a_idx", [statements[0], statements[2], statements[3]]),
    ]
    assert plan.final == [
        statements[0],
        'ALTER TABLE ONLY "s"."t" ADD CONSTRAINT "t_pkey" PRIMARY KEY USING INDEX "t_pkey"',
        statements[2],
        statements[4],
    ]


def test_indexes_alone_leave_nothing_for_the_final_step() -> None:
    plan = plan_builds(["SET default_tablespace = ''", "CREATE INDEX i ON s.t (a)"], "s")
    assert plan.final == [] and len(plan.indexes) == 1


def test_a_derived_statement_outside_the_schema_is_not_used() -> None:
    # the guard decides with the table's schema only: here it is not `s`, so the original runs
    original = "ALTER TABLE ONLY s.t ADD CONSTRAINT t_pkey PRIMARY KEY (id)"
    plan = plan_builds([original], "elsewhere")
    assert plan.indexes == [] and plan.final == [original]


def test_foreign_keys_onto_the_schema_are_set_apart_with_their_settings() -> None:
    statements = [
        "SET default_tablespace = ''",
        "CREATE INDEX t_u_idx ON s.t USING btree (u_id)",
        "ALTER TABLE ONLY s.t ADD CONSTRAINT t_u_fkey FOREIGN KEY (u_id) REFERENCES s.u(id)",
        "ALTER TABLE ONLY s.t ADD CONSTRAINT t_x_fkey FOREIGN KEY (x_id) REFERENCES other.x(id)",
    ]
    own, keys = split_foreign_keys(statements, "s", "t")
    assert own == [statements[0], statements[1], statements[3]]
    assert keys == [ForeignKeyBuild("u", statements[2], [statements[0], statements[2]])]
    assert split_foreign_keys([statements[0], statements[2]], "s", "t")[0] == []
    # a key onto the table itself stays with its builds (its final step, after its own keys)
    parent = "ALTER TABLE ONLY s.t ADD CONSTRAINT t_p_fkey FOREIGN KEY (p) REFERENCES s.t(id)"
    assert split_foreign_keys([parent], "s", "t") == ([parent], [])

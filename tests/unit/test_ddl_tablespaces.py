"""--tablespace-map on a bundle: default_tablespace settings of pre and post rewritten, nothing else."""

from __future__ import annotations

from restore_assets.core.ddl import build_bundle
from restore_assets.core.ddl.tablespaces import map_tablespaces, tablespaces_used

DUMP = """
SET default_tablespace = '';
SET default_table_access_method = heap;
CREATE SCHEMA t1;
SET default_tablespace = "Fast TS";
CREATE TABLE t1.a (id integer NOT NULL);
SET default_tablespace = slow;
CREATE TABLE t1.b (id integer NOT NULL);
SET default_tablespace = '';
CREATE TABLE t1.c (id integer NOT NULL);
SET default_tablespace = slow;
CREATE INDEX b_id ON t1.b USING btree (id);
"""


def test_map_rewrites_only_the_mapped_tablespaces() -> None:
    bundle = build_bundle(DUMP, {"t1": "t1_x"})
    assert tablespaces_used(bundle.pre + bundle.post) == {"Fast TS", "slow"}
    mapped = map_tablespaces(bundle, {"slow": "Archive", "gone": "x"})
    assert 'SET LOCAL default_tablespace = "Archive"' in mapped.pre
    assert 'SET LOCAL default_tablespace = "Archive"' in mapped.post
    assert tablespaces_used(mapped.pre + mapped.post) == {"Fast TS", "Archive"}
    assert mapped.full == bundle.full  # the audit copy stays as dumped
    assert [s for s in mapped.pre if "CREATE" in s] == [s for s in bundle.pre if "CREATE" in s]
    assert any("tablespace map gone=x" in w for w in mapped.warnings)
    assert map_tablespaces(bundle, {}) is bundle

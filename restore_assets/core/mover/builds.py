"""One table's post builds, cut into index builds that can run at the same time, as pgcopydb does.

``CREATE INDEX`` takes a SHARE lock, so several builds on one table run side by side;
``ALTER TABLE ... ADD CONSTRAINT ... PRIMARY KEY / UNIQUE`` takes an ACCESS EXCLUSIVE lock and would
queue behind them. A key or unique constraint is therefore built as ``CREATE UNIQUE INDEX <name>``
(same columns, INCLUDE, WITH and NULLS NOT DISTINCT) next to the other indexes, then attached with
``ALTER TABLE ... ADD CONSTRAINT <name> ... USING INDEX <name>``, which only records the constraint:
the resulting index and constraint are the same as the dump's. Anything else (a check or exclusion
constraint, a deferrable key, an option it does not render) runs unchanged after the index builds,
with the attachments, in dump order. Each statement keeps the settings in force for it in dump order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from pglast import parser
from psycopg import sql

from restore_assets.core.ddl.guard import guard
from restore_assets.core.ddl.parallel import is_setting

_KEY_TYPES = {"CONSTR_PRIMARY": "PRIMARY KEY", "CONSTR_UNIQUE": "UNIQUE"}


@dataclass
class IndexBuild:
    """One index build: the index's name and the statements to run (settings in force, the build)."""

    name: str
    statements: list[str]


@dataclass
class ForeignKeyBuild:
    """A foreign key of the table onto `referenced` (a table of the same schema): added once both
    are complete."""

    referenced: str
    statement: str
    statements: list[str]  # the settings in force for it, then the statement


@dataclass
class TableBuilds:
    """The builds of one table: independent index builds, then one final transaction."""

    indexes: list[IndexBuild] = field(default_factory=list)
    final: list[str] = field(default_factory=list)  # settings, key attachments, the rest
    foreign_keys: list[ForeignKeyBuild] = field(default_factory=list)


def split_foreign_keys(
    statements: list[str], schema: str, table: str
) -> tuple[list[str], list[ForeignKeyBuild]]:
    """A table's builds without its foreign keys onto other tables of `schema` (empty when only
    settings are left), and those keys; a key onto the table itself stays, after its own keys."""
    own: list[str] = []
    keys: list[ForeignKeyBuild] = []
    work = False
    for statement, kind, node, settings in _with_settings(statements, own):
        cmds = node.get("cmds") or [] if kind == "AlterTableStmt" else []
        con = cmds[0].get("AlterTableCmd", {}).get("def", {}).get("Constraint", {}) if cmds else {}
        ref = con.get("pktable") or {}
        onto = ref.get("relname") if ref.get("schemaname") == schema else None
        if len(cmds) == 1 and con.get("contype") == "CONSTR_FOREIGN" and onto not in (None, table):
            keys.append(ForeignKeyBuild(ref["relname"], statement, [*settings, statement]))
            continue
        own.append(statement)
        work = True
    return (own if work else []), keys


def _with_settings(
    statements: list[str], kept: list[str]
) -> Iterator[tuple[str, str, dict, list[str]]]:
    """Each statement but the settings, with its node kind, node and the settings in force for it
    (dump order); the settings are appended to `kept` as they come (they run there too)."""
    settings: list[str] = []
    for statement in statements:
        kind, node = _stmt(statement)
        if kind and is_setting(statement):
            settings.append(statement)
            kept.append(statement)
            continue
        yield statement, kind, node, settings


def _stmt(statement: str) -> tuple[str, dict]:
    """The statement's node kind and node; ("", {}) for what does not parse (the server says why)."""
    try:
        stmt = json.loads(parser.parse_sql_json(statement))["stmts"][0]["stmt"]
    except parser.ParseError:
        return "", {}
    kind = next(iter(stmt))
    return kind, stmt[kind]


def _value(arg: dict) -> str | None:
    """A reloption's value as text (a string, integer or float constant), or None."""
    for key, attr in (("String", "sval"), ("Integer", "ival"), ("Float", "fval")):
        if key in arg:
            return str(arg[key].get(attr, 0))
    return None


def _names(nodes: list[dict]) -> list[str]:
    return [n["String"]["sval"] for n in nodes]


def key_as_index(statement: str) -> tuple[str, str] | None:
    """``ALTER TABLE t ADD CONSTRAINT c PRIMARY KEY|UNIQUE (...)`` as (``CREATE UNIQUE INDEX c ...``,
    ``ALTER TABLE t ADD CONSTRAINT c ... USING INDEX c``); None for anything else."""
    kind, node = _stmt(statement)
    cmds = node.get("cmds") or []
    if kind != "AlterTableStmt" or node.get("objtype") != "OBJECT_TABLE" or len(cmds) != 1:
        return None
    cmd = cmds[0].get("AlterTableCmd", {})
    con = cmd.get("def", {}).get("Constraint", {})
    if cmd.get("subtype") != "AT_AddConstraint" or con.get("contype") not in _KEY_TYPES:
        return None
    unsupported = ("deferrable", "initdeferred", "indexname", "indexspace", "access_method")
    if not con.get("conname") or not con.get("keys") or any(con.get(k) for k in unsupported):
        return None
    if not all("String" in k for k in con["keys"] + con.get("including", [])):
        return None
    rel = node["relation"]
    if not rel.get("schemaname"):
        return None
    table = sql.Identifier(rel["schemaname"], rel["relname"])
    name = sql.Identifier(con["conname"])
    index = sql.SQL("CREATE UNIQUE INDEX {} ON {} USING btree ({})").format(
        name, table, sql.SQL(", ").join(map(sql.Identifier, _names(con["keys"])))
    )
    if con.get("including"):
        index += sql.SQL(" INCLUDE ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, _names(con["including"])))
        )
    if con.get("nulls_not_distinct"):
        index += sql.SQL(" NULLS NOT DISTINCT")
    options = []
    for opt in con.get("options", []):
        elem = opt.get("DefElem", {})
        value = _value(elem.get("arg", {}))
        if value is None or elem.get("defnamespace"):
            return None
        options.append(
            sql.SQL("{} = {}").format(sql.Identifier(elem["defname"]), sql.Literal(value))
        )
    if options:
        index += sql.SQL(" WITH ({})").format(sql.SQL(", ").join(options))
    attach = sql.SQL("ALTER TABLE ONLY {} ADD CONSTRAINT {} {} USING INDEX {}").format(
        table, name, sql.SQL(_KEY_TYPES[con["contype"]]), name
    )
    return index.as_string(None), attach.as_string(None)


def plan_builds(statements: list[str], schema: str) -> TableBuilds:
    """Cut one table's builds (settings interleaved, dump order) into parallel index builds and a
    final transaction; derived statements must pass the guard for `schema`, else the original runs."""
    plan = TableBuilds()
    final_work = False
    for statement, kind, node, settings in _with_settings(statements, plan.final):
        if kind == "IndexStmt":
            plan.indexes.append(IndexBuild(node.get("idxname", ""), [*settings, statement]))
            continue
        derived = key_as_index(statement)
        if derived is not None:
            try:
                guard(list(derived), {schema})
            except Exception:  # noqa: BLE001 - not provably inside the schema: run the original
                derived = None
        if derived is None:
            plan.final.append(statement)
        else:
            name = node["cmds"][0]["AlterTableCmd"]["def"]["Constraint"]["conname"]
            plan.indexes.append(IndexBuild(name, [*settings, derived[0]]))
            plan.final.append(derived[1])
        final_work = True
    if not final_work:
        plan.final = []  # settings alone: nothing to run after the index builds
    return plan

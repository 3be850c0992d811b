"""Apply *post* in parallel, as pgcopydb does: index and key builds per table on N connections.

The restored schema is new and nothing uses it while a restore runs, so *post* need not be one
transaction: a failure anywhere fails the restore, and its cleanup drops the whole schema. Three waves:

1. per table, on up to ``workers`` connections (one transaction per table): CREATE INDEX and the
   unique, primary key, check and exclusion constraints of tables that *pre* created;
   then ``ALTER INDEX ... ATTACH PARTITION`` in one transaction (a foreign key to a partitioned table
   needs its key's index attached in every leaf first);
2. foreign keys, in one transaction (they lock both tables, so running them together would only queue);
3. everything else, in dump order, in one transaction (triggers, views, materialized views and their
   indexes and refresh, RLS and policies, comments, grants, sequence values).

Every statement is guarded before anything runs; each wave starts with the dump's session settings,
and each statement is preceded by the settings in force for it in dump order where they differ
(``default_tablespace``, ``default_table_access_method``): nothing is hoisted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import psycopg
from pglast import parser

from restore_assets.core.ddl.apply import apply
from restore_assets.core.ddl.guard import guard

TABLE_CONSTRAINTS = {"CONSTR_PRIMARY", "CONSTR_UNIQUE", "CONSTR_CHECK", "CONSTR_EXCLUSION"}


@dataclass
class PostPlan:
    """The post statements sorted into the three waves."""

    session: list[str] = field(default_factory=list)
    per_table: dict[str, list[str]] = field(default_factory=dict)
    attach: list[str] = field(default_factory=list)  # ALTER INDEX ... ATTACH PARTITION
    foreign_keys: list[str] = field(default_factory=list)
    rest: list[str] = field(default_factory=list)


def _node(statement: str) -> tuple[str, dict]:
    stmt = json.loads(parser.parse_sql_json(statement))["stmts"][0]["stmt"]
    kind = next(iter(stmt))
    return kind, stmt[kind]


def _is_session(kind: str, node: dict) -> bool:
    if kind == "VariableSetStmt":
        return True
    if kind == "SelectStmt":
        targets = node.get("targetList") or []
        if len(targets) == 1:
            call = targets[0].get("ResTarget", {}).get("val", {}).get("FuncCall", {})
            names = [n["String"]["sval"] for n in call.get("funcname", []) if "String" in n]
            return names[-1:] == ["set_config"]
    return False


def is_setting(statement: str) -> bool:
    """True for a session setting of a bundle (SET ..., SELECT set_config(...)).

    Settings are idempotent and a statement's own settings come from dump order, so a caller that
    removes statements already run elsewhere from *post* keeps these (see ``plan_post``).
    """
    kind, node = _node(statement)
    return _is_session(kind, node)


def _constraint_types(node: dict) -> set[str] | None:
    kinds = set()
    for cmd in node.get("cmds", []):
        c = cmd.get("AlterTableCmd", {})
        if c.get("subtype") != "AT_AddConstraint":
            return None
        kinds.add(c.get("def", {}).get("Constraint", {}).get("contype"))
    return kinds or None


def _is_index_attach(kind: str, node: dict) -> bool:
    """ALTER INDEX ... ATTACH PARTITION (a partition's index joins its parent's)."""
    cmds = node.get("cmds", [])
    return (
        kind == "AlterTableStmt"
        and node.get("objtype") == "OBJECT_INDEX"
        and bool(cmds)
        and all(c.get("AlterTableCmd", {}).get("subtype") == "AT_AttachPartition" for c in cmds)
    )


def _setting_name(kind: str, node: dict) -> str:
    """The name of the setting a session statement sets (SET x / set_config('x', ...))."""
    if kind == "VariableSetStmt":
        return str(node.get("name"))
    call = node["targetList"][0]["ResTarget"]["val"]["FuncCall"]
    return str(call.get("args", [{}])[0].get("A_Const", {}).get("sval", {}).get("sval"))


def plan_post(statements: list[str]) -> PostPlan:
    """Sort post statements into per-table builds, foreign keys and the rest (dump order kept).

    Settings travel with their statements: pg_dump changes ``default_tablespace`` and
    ``default_table_access_method`` between objects, so each wave gets, right before a statement,
    the settings that were in force for it in dump order and differ from the wave's own (the
    settings before the first statement are ``session``, the prefix of every wave).
    """
    plan = PostPlan()
    created_in_post: set[tuple[str | None, str]] = set()
    current: dict[str, str] = {}  # setting name -> the statement that set it, in dump order
    in_force: dict[int, dict[str, str]] = {}  # id of a wave list -> settings it has run
    plan_header: dict[str, str] = {}  # the settings before the first statement (every wave's)
    header = True

    def add(wave: list[str], statement: str) -> None:
        state = in_force.setdefault(id(wave), dict(plan_header))
        for name, setting in current.items():
            if state.get(name) != setting:
                wave.append(setting)
                state[name] = setting
        wave.append(statement)

    for statement in statements:
        kind, node = _node(statement)
        if _is_session(kind, node):
            current[_setting_name(kind, node)] = statement
            if header:
                plan.session.append(statement)
                plan_header[_setting_name(kind, node)] = statement
            continue
        header = False
        if _is_index_attach(kind, node):
            # after every table's builds, before the foreign keys: a key referenced by a foreign
            # key on a partitioned table is valid only once each leaf's index is attached
            add(plan.attach, statement)
            continue
        if kind == "ViewStmt":
            created_in_post.add((node["view"].get("schemaname"), node["view"]["relname"]))
        elif kind == "CreateTableAsStmt":
            rel = node["into"]["rel"]
            created_in_post.add((rel.get("schemaname"), rel["relname"]))
        rel = node.get("relation") if kind in ("IndexStmt", "AlterTableStmt") else None
        key = (rel.get("schemaname"), rel["relname"]) if rel else None
        if key and key not in created_in_post:
            types = _constraint_types(node) if kind == "AlterTableStmt" else {"index"}
            if types == {"CONSTR_FOREIGN"}:
                add(plan.foreign_keys, statement)
                continue
            if types and (types <= TABLE_CONSTRAINTS or types == {"index"}):
                add(plan.per_table.setdefault(f"{key[0]}.{key[1]}", []), statement)
                continue
        add(plan.rest, statement)
    return plan


def apply_post(
    dsn: str,
    statements: list[str],
    allowed_schemas: set[str],
    *,
    workers: int = 4,
    lock_timeout: str = "5s",
    maintenance_work_mem: str = "256MB",
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Guard, then apply post in three waves (parallel per-table builds first); return counts per wave."""
    guard(statements, allowed_schemas)
    plan = plan_post(statements)
    prefix = build_prefix(plan.session, maintenance_work_mem)

    def run(batch: list[str]) -> None:
        with psycopg.connect(dsn) as conn:
            apply(conn, prefix + batch, lock_timeout=lock_timeout)

    groups = sorted(plan.per_table.values(), key=len, reverse=True)
    if groups:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="post") as pool:
            futures = [pool.submit(run, g) for g in groups]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for f in pending:
                f.cancel()
            for f in done:
                f.result()
    if progress:
        progress(f"post: {sum(len(g) for g in groups)} index/key builds on {len(groups)} tables")
    if plan.attach:
        run(plan.attach)
    if plan.foreign_keys:
        run(plan.foreign_keys)
    if plan.rest:
        run(plan.rest)
    return {
        "per_table": sum(len(g) for g in groups),
        "attach": len(plan.attach),
        "foreign_keys": len(plan.foreign_keys),
        "rest": len(plan.rest),
    }


def build_prefix(session: list[str], maintenance_work_mem: str) -> list[str]:
    """The statements run before each group of post builds: settings, sort memory, no workers."""
    # no parallel workers of the server's own: a restore's load on the production server is its
    # own sessions' (the builds already run side by side on N connections), and no build takes up
    # to max_parallel_maintenance_workers more processes from the tenants the server serves
    return [
        *session,
        f"SET LOCAL maintenance_work_mem = '{_mem(maintenance_work_mem)}'",
        "SET LOCAL max_parallel_maintenance_workers = 0",
    ]


def _mem(value: str) -> str:
    """A memory setting such as 256MB (digits and a unit only: it is spliced into SET)."""
    cleaned = value.strip()
    if not cleaned[:-2].isdigit() or cleaned[-2:].upper() not in ("KB", "MB", "GB"):
        raise ValueError(f"maintenance_work_mem must look like 256MB, got {value!r}")
    return cleaned


def per_table_builds(
    statements: list[str],
    allowed_schemas: set[str],
    schema: str,
    *,
    maintenance_work_mem: str = "256MB",
) -> tuple[dict[str, list[str]], list[str]]:
    """Guard all of post, then the first wave's builds of `schema`'s tables by table name, and the
    session prefix to run before each group: what a mover runs as soon as a table is copied.

    A group ends with the foreign keys of its table (each after the settings in force for it): the
    mover adds one once both its tables are complete; what the mover does not run, post does.
    """
    guard(statements, allowed_schemas)
    plan = plan_post(statements)
    prefix = build_prefix(plan.session, maintenance_work_mem)
    head = f"{schema}."
    groups = {k[len(head) :]: v for k, v in plan.per_table.items() if k.startswith(head)}
    settings: list[str] = []
    for statement in plan.foreign_keys:
        kind, node = _node(statement)
        if _is_session(kind, node):
            settings.append(statement)
        elif node["relation"].get("schemaname") == schema:
            groups.setdefault(node["relation"]["relname"], []).extend([*settings, statement])
    return groups, prefix


def _defers_safely(kind: str, node: dict) -> bool:
    """False for pre objects that may need a primary key when created: a view or an SQL-standard
    function body (parsed at creation) with a GROUP BY, which may rely on the key's functional
    dependency (the one way a query depends on a constraint), or an ON CONFLICT clause."""
    if kind != "ViewStmt" and not (kind == "CreateFunctionStmt" and node.get("sql_body")):
        return True
    text = json.dumps(node)
    return '"groupClause"' not in text and '"onConflictClause"' not in text


def defer_primary_keys(pre: list[str]) -> tuple[list[str], list[str]]:
    """Pre without its primary keys, and those keys with the settings in force for each (dump order).

    A mover that builds each table's keys right after its copy loads the table without a unique
    index to maintain row by row, as pgcopydb does. Nothing is deferred (pre returned as it is)
    when pre holds a view or an SQL-standard function body, which may need a key when created.
    """
    nodes = [_node(s) for s in pre]
    if not all(_defers_safely(kind, node) for kind, node in nodes):
        return list(pre), []
    kept: list[str] = []
    keys: list[str] = []
    for statement, (kind, node) in zip(pre, nodes, strict=True):
        if _is_session(kind, node):
            kept.append(statement)
            keys.append(statement)
        elif kind == "AlterTableStmt" and _constraint_types(node) == {"CONSTR_PRIMARY"}:
            keys.append(statement)
        else:
            kept.append(statement)
    if len(keys) == sum(1 for k, n in nodes if _is_session(k, n)):
        return list(pre), []
    return kept, keys

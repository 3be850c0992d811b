"""Table-level restore: keep only the statements a subset of a schema's tables needs (by AST).

A statement is kept unless it creates a table that is not restored, or refers to a relation, type or
function of a restored schema that the restore leaves out (a foreign key to a table left out, a view
over it, a policy whose subquery reads it, a grant on its identity sequence, a BEGIN ATOMIC function
reading it...). What a dropped statement would have created is itself left out, so dependents follow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from pglast import parser

from restore_assets.core.ddl.split import DdlBundle

Name = tuple[str | None, str]


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def _strings(items: Any) -> list[str]:
    if isinstance(items, dict) and "List" in items:
        items = items["List"]["items"]
    if not isinstance(items, list):
        return []
    return [i["String"]["sval"] for i in items if isinstance(i, dict) and "String" in i]


def _pair(parts: list[str]) -> Name | None:
    return (parts[-2], parts[-1]) if len(parts) >= 2 else None


def _regclass_literal(text: str) -> Name | None:
    """'schema.name' or '"Schema".name' as written in a setval/nextval literal."""
    parts, cur, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch if quoted else ch.lower()
    parts.append(cur)
    return _pair(parts)


def _parse(statement: str) -> tuple[str, dict[str, Any]]:
    stmt = json.loads(parser.parse_sql_json(statement))["stmts"][0]["stmt"]
    kind = next(iter(stmt))
    return kind, stmt[kind]


def _references(kind: str, node: dict[str, Any]) -> Iterator[Name]:
    """Every relation, type or function name a statement mentions."""
    for d in _walk(node):
        if "relname" in d and "relpersistence" in d:
            yield d.get("schemaname"), d["relname"]
        elif "names" in d and "typemod" in d:  # TypeName
            pair = _pair(_strings(d["names"]))
            if pair:
                yield pair
        elif "funcname" in d:
            pair = _pair(_strings(d["funcname"]))
            if pair:
                yield pair
            if _strings(d["funcname"])[-1:] in (["setval"], ["nextval"]):
                for arg in d.get("args", [])[:1]:
                    lit = (
                        arg.get("A_Const", {}).get("sval", {}).get("sval")
                        if isinstance(arg, dict)
                        else None
                    )
                    if lit:
                        pair = _regclass_literal(lit)
                        if pair:
                            yield pair
        elif (
            "objname" in d and "objargs" in d or "objname" in d and "args_unspecified" in d
        ):  # ObjectWithArgs
            pair = _pair(_strings(d["objname"]))
            if pair:
                yield pair
        elif d.get("defname") == "owned_by":
            pair = _pair(_strings(d.get("arg"))[:-1])
            if pair:
                yield pair
    if kind == "CommentStmt":
        parts = _strings(node.get("object"))
        if node.get("objtype") in (
            "OBJECT_COLUMN",
            "OBJECT_TABCONSTRAINT",
            "OBJECT_TRIGGER",
            "OBJECT_POLICY",
            "OBJECT_RULE",
        ):
            parts = parts[:-1]  # the last part names the column/constraint/trigger on the relation
        pair = _pair(parts)
        if pair:
            yield pair


def _creates(kind: str, node: dict[str, Any]) -> Iterator[Name]:
    """The names a statement would create (left out with it when it is dropped)."""
    if kind == "ViewStmt":
        yield node["view"].get("schemaname"), node["view"]["relname"]
    elif kind == "CreateTableAsStmt":
        rel = node["into"]["rel"]
        yield rel.get("schemaname"), rel["relname"]
    elif kind == "IndexStmt" and node.get("idxname"):
        yield node["relation"].get("schemaname"), node["idxname"]
    elif kind == "CreateFunctionStmt":
        pair = _pair(_strings(node["funcname"]))
        if pair:
            yield pair
    elif kind == "AlterTableStmt":
        schema = node["relation"].get("schemaname")
        for d in _walk(node.get("cmds", [])):
            if d.get("defname") == "sequence_name":
                pair = _pair(_strings(d.get("arg")))
                if pair:
                    yield pair
            if "contype" in d and d.get("conname"):
                yield schema, d["conname"]


def restrict_to_tables(bundle: DdlBundle, keep: dict[str, set[str]]) -> DdlBundle:
    """The bundle reduced to the given tables (per restored schema) and what only they need."""
    schemas = set(keep)
    kept_tables = {(s, t) for s, tables in keep.items() for t in tables}
    parsed = [(s, *_parse(s)) for s in [*bundle.pre, *bundle.post]]
    # partitions attached to a restored table are restored with it
    for _s, kind, node in parsed:
        if (
            kind == "AlterTableStmt"
            and (node["relation"].get("schemaname"), node["relation"]["relname"]) in kept_tables
        ):
            for d in _walk(node.get("cmds", [])):
                if "PartitionCmd" in d:
                    part = d["PartitionCmd"]["name"]
                    kept_tables.add((part.get("schemaname"), part["relname"]))
    for _s, kind, node in parsed:
        if kind == "CreateStmt" and node.get("partbound"):
            parents = {
                (r["RangeVar"].get("schemaname"), r["RangeVar"]["relname"])
                for r in node.get("inhRelations", [])
            }
            if parents & kept_tables:
                kept_tables.add((node["relation"].get("schemaname"), node["relation"]["relname"]))

    dropped: set[Name] = set()
    decisions: dict[int, bool] = {}
    for i, (_s, kind, node) in enumerate(parsed):
        if kind == "CreateStmt":
            name = (node["relation"].get("schemaname"), node["relation"]["relname"])
            if name[0] in schemas and name not in kept_tables:
                dropped.add(name)
        ok = not any(ref in dropped for ref in _references(kind, node))
        decisions[i] = ok
        if not ok:
            dropped.update(n for n in _creates(kind, node) if n[0] in schemas)
    n_pre = len(bundle.pre)
    return replace(
        bundle,
        pre=[s for i, (s, _k, _n) in enumerate(parsed[:n_pre]) if decisions[i]],
        post=[s for i, (s, _k, _n) in enumerate(parsed[n_pre:], n_pre) if decisions[i]],
    )

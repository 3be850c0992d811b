"""Table-level restore: keep only the statements a subset of a schema's tables needs (by AST)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from pglast import parser

from restore_assets.ddl.split import DdlBundle

RELATION_OBJTYPES = {
    "OBJECT_TABLE",
    "OBJECT_COLUMN",
    "OBJECT_TABCONSTRAINT",
    "OBJECT_TRIGGER",
    "OBJECT_POLICY",
    "OBJECT_RULE",
    "OBJECT_INDEX",
    "OBJECT_VIEW",
    "OBJECT_MATVIEW",
    "OBJECT_FOREIGN_TABLE",
}


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def _rangevars(node: Any) -> Iterator[tuple[str | None, str]]:
    for d in _walk(node):
        if "relname" in d and "relpersistence" in d:
            yield d.get("schemaname"), d["relname"]


def _parse(statement: str) -> tuple[str, dict[str, Any]]:
    stmt = json.loads(parser.parse_sql_json(statement))["stmts"][0]["stmt"]
    kind = next(iter(stmt))
    return kind, stmt[kind]


def _strings(items: list[Any]) -> list[str]:
    return [i["String"]["sval"] for i in items if isinstance(i, dict) and "String" in i]


class _Filter:
    """Decides, statement by statement, whether a table-level restore keeps it."""

    def __init__(self, keep: dict[str, set[str]], bundle: DdlBundle) -> None:
        self.keep = {s: set(t) for s, t in keep.items()}
        self.schemas = set(keep)
        self.dropped: set[tuple[str, str]] = set()
        # tables of the restored schemas that the dump creates; partitions follow their parent
        for statement in bundle.pre:
            kind, node = _parse(statement)
            if kind == "CreateStmt":
                self._note_table(
                    node["relation"], node.get("inhRelations") or [], node.get("partbound")
                )
            elif kind == "AlterTableStmt":
                for cmd in node.get("cmds", []):
                    c = cmd.get("AlterTableCmd", {})
                    if c.get("subtype") == "AT_AttachPartition":
                        part = c["def"]["PartitionCmd"]["name"]
                        if self.kept(
                            node["relation"].get("schemaname"), node["relation"]["relname"]
                        ):
                            self.keep.setdefault(part.get("schemaname"), set()).add(part["relname"])

    def _note_table(self, rel: dict[str, Any], parents: list[Any], partbound: Any) -> None:
        schema, name = rel.get("schemaname"), rel["relname"]
        if schema not in self.schemas:
            return
        if partbound and any(self.kept(s, n) for s, n in _rangevars(parents)):
            self.keep[schema].add(name)
        if not self.kept(schema, name):
            self.dropped.add((schema, name))

    def kept(self, schema: str | None, name: str) -> bool:
        """True when the relation is outside the restored schemas or one of the kept tables."""
        return schema not in self.schemas or name in self.keep.get(schema, set())

    def relation_ok(self, schema: str | None, name: str) -> bool:
        """False only for a table of a restored schema that the restore leaves out."""
        return (schema, name) not in self.dropped

    def keeps(self, statement: str) -> bool:
        """Whether the statement belongs to the table-level restore."""
        kind, node = _parse(statement)
        if kind in (
            "CreateStmt",
            "AlterTableStmt",
            "IndexStmt",
            "CreateTrigStmt",
            "CreatePolicyStmt",
            "RuleStmt",
        ):
            rel = node["table" if kind == "CreatePolicyStmt" else "relation"]
            if not self.relation_ok(rel.get("schemaname"), rel["relname"]):
                return False
            # a foreign key to a table left out of the restore is dropped (listed in the plan)
            return all(self.relation_ok(s, n) for s, n in _rangevars(node.get("cmds", [])))
        if kind in ("ViewStmt", "CreateTableAsStmt", "RefreshMatViewStmt"):
            if all(self.relation_ok(s, n) for s, n in _rangevars(node)):
                return True
            own = node.get("view") or (node.get("into") or {}).get("rel")
            if own:
                self.dropped.add((own.get("schemaname"), own["relname"]))
            return False
        if kind == "AlterSeqStmt":
            for opt in node.get("options", []):
                d = opt.get("DefElem", {})
                if d.get("defname") == "owned_by":
                    parts = _strings(d["arg"]["List"]["items"])
                    if len(parts) == 3 and not self.relation_ok(parts[0], parts[1]):
                        return False
            return True
        if kind == "CommentStmt" and node.get("objtype") in RELATION_OBJTYPES:
            return self._object_ok(node.get("objtype"), node.get("object"))
        if kind == "GrantStmt" and node.get("objtype") == "OBJECT_TABLE":
            return all(self.relation_ok(s, n) for s, n in _rangevars(node.get("objects", [])))
        if kind == "AlterOwnerStmt" or kind == "AlterObjectSchemaStmt":
            return all(self.relation_ok(s, n) for s, n in _rangevars(node))
        return True

    def _object_ok(self, objtype: str | None, obj: Any) -> bool:
        if isinstance(obj, dict) and "List" in obj:
            parts = _strings(obj["List"]["items"])
        elif isinstance(obj, list):
            parts = _strings(obj)
        else:
            return True
        if objtype in ("OBJECT_COLUMN",) and len(parts) >= 3:
            return self.relation_ok(parts[-3], parts[-2])
        if (
            objtype in ("OBJECT_TABCONSTRAINT", "OBJECT_TRIGGER", "OBJECT_POLICY", "OBJECT_RULE")
            and len(parts) >= 3
        ):
            return self.relation_ok(parts[-3], parts[-2])
        if len(parts) >= 2:
            return self.relation_ok(parts[-2], parts[-1])
        return True


def restrict_to_tables(bundle: DdlBundle, keep: dict[str, set[str]]) -> DdlBundle:
    """The bundle reduced to the given tables (per restored schema) and what only they need."""
    f = _Filter(keep, bundle)
    return replace(
        bundle,
        pre=[s for s in bundle.pre if f.keeps(s)],
        post=[s for s in bundle.post if f.keeps(s)],
    )

"""View repair: a view that a *pre* statement depends on moves to *pre* with the views it reads.

pg_dump puts views in its post-data order, but a ``BEGIN ATOMIC`` function may read a view, and a
function, table or type may use a view's row type: such a view (and, recursively, the views it
reads) is moved to *pre*, where it keeps its place in dump order (before the statement that needs
it). Also here: ``REFRESH MATERIALIZED VIEW`` for the materialized views the dump fills.
"""

from __future__ import annotations

import json
from typing import Protocol

from restore_assets.core.ddl.classify import Analysis, Key, SourceKeys
from restore_assets.core.ddl.names import qualified
from restore_assets.core.ddl.tree_facts import collect_facts

# pre statements whose creation may need a view to exist (BEGIN ATOMIC bodies, row types)
VIEW_DEPENDENT_KINDS = frozenset(
    {
        "CreateFunctionStmt",
        "CreateStmt",
        "CompositeTypeStmt",
        "CreateDomainStmt",
        "CreateRangeStmt",
        "DefineStmt",
    }
)


class Placed(Protocol):
    """A statement placed in dump order: its class may change to pre."""

    cls: str


def table_type_refs(node: dict) -> list[tuple[str, str]]:
    """Schema-qualified types of a CREATE TABLE's columns (a column may use a view's row type)."""
    refs = []
    for elt in node.get("tableElts", ()):
        names = elt.get("ColumnDef", {}).get("typeName", {}).get("names", ())
        if len(names) == 2:
            refs.append((names[0]["String"]["sval"], names[1]["String"]["sval"]))
    of = node.get("ofTypename", {}).get("names", ())
    if len(of) == 2:
        refs.append((of[0]["String"]["sval"], of[1]["String"]["sval"]))
    return refs


def note_view_refs(kind: str, node: dict, a: Analysis, keys: SourceKeys) -> None:
    """Record what a view reads (``a.view``), or which views a pre statement may need (``a.refs``)."""
    if kind == "ViewStmt" or (
        kind == "CreateTableAsStmt" and node.get("objtype") == "OBJECT_MATVIEW"
    ):
        facts = collect_facts(node, refs=True)
        key = keys.rv_key(node.get("view") or node.get("into", {}).get("rel"))
        if key:
            a.view = (key, [keys.key(*r) for r in facts.rangevars + facts.typenames])
    elif a.cls == "pre" and kind in VIEW_DEPENDENT_KINDS:
        if kind == "CreateStmt":
            refs = table_type_refs(node)
        else:
            facts = collect_facts(node, refs=True)
            refs = facts.rangevars + facts.typenames
        a.refs = [keys.key(*r) for r in refs]


class ViewOrder:
    """The views placed so far (pre-data section), and their move to pre when one is needed."""

    def __init__(self, keys: SourceKeys, entries: list[Placed], warnings: list[str]):
        self.keys = keys
        self.entries = entries
        self.warnings = warnings
        self.views: dict[Key, tuple[int, list[Key]]] = {}

    def __contains__(self, key: Key) -> bool:
        return key in self.views

    def place(self, a: Analysis, cls: str, index: int, in_post_data: bool) -> None:
        """Note a view placed at index, or move the views the pre statement at index needs."""
        if a.view is not None:
            if not in_post_data:
                self.views[a.view[0]] = (index, a.view[1])
        elif cls == "pre" and self.views and (a.refs or a.tree_json):
            refs = a.refs
            if a.tree_json is not None:  # a CREATE TABLE decoded in part: its column types now
                node = json.loads(a.tree_json)["stmts"][0]["stmt"][a.kind]
                refs = [self.keys.key(*r) for r in table_type_refs(node)]
            for ref in refs or ():
                self._promote(ref, index)

    def _promote(self, key: Key, before: int) -> None:
        """Move a view (and the views it reads) to pre: a pre statement needs it."""
        found = self.views.get(key)
        if found is None:
            return
        index, refs = found
        entry = self.entries[index]
        if index >= before or entry.cls == "pre":
            return
        entry.cls = "pre"
        self.warnings.append(
            f"view {key[0]}.{key[1]} moved to pre: a function or type created in pre depends on it"
        )
        for ref in refs:
            self._promote(ref, index)


def refresh_statements(matviews: list[Key], renames: dict[str, str]) -> list[str]:
    """REFRESH MATERIALIZED VIEW of each restored materialized view the dump fills."""
    return [
        f"REFRESH MATERIALIZED VIEW {qualified(renames[schema], name)}"
        for schema, name in matviews
        if schema in renames
    ]

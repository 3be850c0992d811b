"""What the rename reads from a statement's parse tree, collected in one walk.

The column references whose first part is not a schema (all but ``schema.table.column``), the
``search_path`` values (``SET search_path``, ``set_config('search_path', ...)``) and, when asked,
the qualified relation and type names the statement uses (views.py orders views by them).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TreeFacts:
    """What the rename needs from one parse tree, collected in a single walk."""

    colref_exclusions: set[int] = field(default_factory=set)  # byte offsets
    search_path_args: list[int] = field(default_factory=list)  # byte offsets of A_Const values
    rangevars: list[tuple[str, str]] = field(default_factory=list)
    typenames: list[tuple[str, str]] = field(default_factory=list)


NO_FACTS = TreeFacts()  # shared, never mutated: a statement with nothing to collect


def collect_facts(tree: object, *, refs: bool = False) -> TreeFacts:
    """Walk a JSON parse tree once, collecting column refs, search_path values and references."""
    facts = TreeFacts()
    stack = [tree]
    while stack:
        node = stack.pop()
        if type(node) is list:
            stack.extend(node)
            continue
        if type(node) is not dict:
            continue
        colref = node.get("ColumnRef")
        if colref is not None:
            fields = colref.get("fields", ())
            loc = colref.get("location", -1)
            if loc >= 0 and len(fields) != 3:
                facts.colref_exclusions.add(loc)
        vset = node.get("VariableSetStmt")
        if vset is not None and vset.get("name") == "search_path":
            for arg in vset.get("args", ()):
                const = arg.get("A_Const")
                if const is not None and "sval" in const:
                    facts.search_path_args.append(const.get("location", -1))
        call = node.get("FuncCall")
        if call is not None:
            names = call.get("funcname", ())
            args = call.get("args", ())
            if names and names[-1].get("String", {}).get("sval") == "set_config" and len(args) >= 2:
                first = args[0].get("A_Const", {})
                second = args[1].get("A_Const")
                if first.get("sval", {}).get("sval") == "search_path" and second is not None:
                    facts.search_path_args.append(second.get("location", -1))
        if refs:
            if "relname" in node and node.get("schemaname"):
                facts.rangevars.append((node["schemaname"], node["relname"]))
            elif "typemod" in node and "names" in node:
                parts = [n.get("String", {}).get("sval") for n in node["names"]]
                if len(parts) == 2 and all(parts):
                    facts.typenames.append((parts[0], parts[1]))
        for value in node.values():
            if type(value) is dict or type(value) is list:
                stack.append(value)
    return facts

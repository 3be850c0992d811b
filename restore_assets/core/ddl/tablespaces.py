"""Tablespaces of restored objects: kept as in the source, or moved with a tablespace map.

pg_dump places objects in tablespaces with ``SET default_tablespace = name`` before them (never a
``TABLESPACE`` clause), and the engine keeps that setting with each statement (see ``split`` and
``parallel``). A map ``{old: new}`` rewrites those settings in *pre* and *post*, so the restored
objects of tablespace ``old`` are created in ``new``; ``full`` (the audit copy) is left as dumped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

from pglast import parser

from restore_assets.core.ddl.names import quote_ident
from restore_assets.core.ddl.split import DdlBundle


def _default_tablespace(statement: str) -> str | None:
    """The tablespace a SET [LOCAL] default_tablespace / set_config statement names, else None."""
    head = statement.lstrip()[:64].lower()
    if "default_tablespace" not in statement[:200] or not (
        head.startswith("set") or head.startswith("select")
    ):
        return None
    try:
        stmt = json.loads(parser.parse_sql_json(statement))["stmts"][0]["stmt"]
    except (parser.ParseError, KeyError, IndexError):
        return None
    node = stmt.get("VariableSetStmt")
    if node is not None and node.get("name") == "default_tablespace":
        args = node.get("args") or []
        if node.get("kind") != "VAR_SET_VALUE" or len(args) != 1:
            return ""
        return args[0].get("A_Const", {}).get("sval", {}).get("sval", "")
    call = (
        stmt.get("SelectStmt", {}).get("targetList", [{}])[0].get("ResTarget", {}).get("val", {})
    ).get("FuncCall")
    if call is not None:
        args = [a.get("A_Const", {}).get("sval", {}).get("sval") for a in call.get("args", [])]
        if args[:1] == ["default_tablespace"] and len(args) >= 2:
            return args[1] or ""
    return None


def tablespaces_used(statements: list[str]) -> set[str]:
    """Every tablespace named by a default_tablespace setting of the statements ('' left out)."""
    return {t for s in statements if (t := _default_tablespace(s))}


def map_tablespaces(bundle: DdlBundle, mapping: Mapping[str, str]) -> DdlBundle:
    """The bundle with objects of tablespace ``old`` created in ``new`` (pre and post)."""
    if not mapping:
        return bundle
    used = tablespaces_used(bundle.pre + bundle.post)
    warnings = [
        f"tablespace map {old}={new}: no restored object is in tablespace {old}"
        for old, new in sorted(mapping.items())
        if old not in used
    ]

    def mapped(statement: str) -> str:
        old = _default_tablespace(statement)
        if not old or old not in mapping:
            return statement
        return f"SET LOCAL default_tablespace = {quote_ident(mapping[old])}"

    return replace(
        bundle,
        pre=[mapped(s) for s in bundle.pre],
        post=[mapped(s) for s in bundle.post],
        warnings=[*bundle.warnings, *warnings],
    )

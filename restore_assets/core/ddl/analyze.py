"""One statement of a dump: renamed, parsed, classified and checked with the guard's rules.

The fast path renames by scanner tokens alone (see ``rename``), then parses the renamed text once.
A statement whose renaming needs the parse tree first (column references spelled like the schema,
``search_path`` values, function bodies, ``SCHEMA`` clauses) takes the slow path: it is parsed
before and after renaming. Nothing is kept across statements (see ``split`` for that).
"""

from __future__ import annotations

import json

from pglast import parser

from restore_assets.core.ddl.classify import (
    Analysis,
    SourceKeys,
    classify,
    owner_only,
    transaction_local,
)
from restore_assets.core.ddl.guard import SchemaCheck, node_violation, text_violation
from restore_assets.core.ddl.inventory import INVENTORY
from restore_assets.core.ddl.rename import SCHEMA_NAMING_STATEMENTS, Renamer
from restore_assets.core.ddl.tokens import apply_edits
from restore_assets.core.ddl.views import note_view_refs

# statements renamed with the original statement's parse tree (function bodies, DO blocks)
ORIGINAL_TREE_KINDS = frozenset({"CreateFunctionStmt", "DoStmt"})
WHITESPACE_OR_DASH = frozenset(" \t\r\n\f-")

Prepared = tuple[str, list[parser.Token], str]  # statement, its tokens, token-renamed text


def _kind(tree_json: str) -> str | None:
    """The node type of a one-statement parse tree, read from its JSON text; None if unsure."""
    marker = '{"stmt":{"'
    at = tree_json.find(marker)
    if at < 0 or tree_json.find(marker, at + 1) >= 0:
        return None
    start = at + len(marker)
    return tree_json[start : tree_json.index('"', start)]


def _leading_comments(raw: str) -> int:
    """Length of the whitespace and ``--`` comment lines before a statement's first token."""
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c in " \t\r\n\f":
            i += 1
        elif raw.startswith("--", i):
            end = raw.find("\n", i)
            if end < 0:
                return n
            i = end + 1
        else:
            break
    return i


class Analyzer:
    """Renames, parses, classifies and guards single statements (no state across statements)."""

    def __init__(self, renames: dict[str, str], include_owner: bool = False):
        self.include_owner = include_owner
        self.keys = SourceKeys(renames)
        self.renamer = Renamer(renames)
        self.check = SchemaCheck(set(renames.values()))

    def analyze(self, raw: str) -> Analysis | None:
        """The analysis of one statement of the dump; None for an empty one."""
        prepared = self.prepare(raw)
        if prepared is None or isinstance(prepared, Analysis):
            return prepared
        return self.complete(prepared, _parse_or_none(prepared[2]))

    def prepare(self, raw: str) -> Prepared | Analysis | None:
        """Scan and rename by tokens: (statement, its tokens, renamed text) for ``complete``."""
        if raw[:1] in WHITESPACE_OR_DASH:
            raw = raw[_leading_comments(raw) :]
        try:
            toks = parser.scan(raw)
        except parser.ParseError as exc:
            return self._unknown(raw.strip(), f"cannot be scanned ({exc})")
        if not toks:
            return None
        edits, _ = self.renamer.token_edits(raw, toks)
        return raw, toks, apply_edits(raw, edits) if edits else raw

    def complete(self, prepared: Prepared, tree_json: str | None) -> Analysis:
        """Classify and check a token-renamed statement from its renamed parse tree (JSON).

        The original statement's tree is needed when a column reference, a search_path value, a
        function body or a SCHEMA clause is involved: the renamed tree tells (a column
        reference now spelled like a *new* schema name, a search_path, a function, a SCHEMA
        clause of a schema statement), and those statements take the slow path, which starts
        over from the original text.
        """
        raw, toks, renamed = prepared
        kind = _kind(tree_json) if tree_json is not None else None
        if (
            kind is None
            or kind in ORIGINAL_TREE_KINDS
            or self.renamer.needs_facts(tree_json, renamed=True)  # type: ignore[arg-type]
            or (kind in SCHEMA_NAMING_STATEMENTS and any(t.name == "SCHEMA" for t in toks))
        ):
            return self._slow(raw, toks)
        first, last = toks[0].start, toks[-1].end + 1
        text = renamed[first : len(renamed) - (len(raw) - last)]
        if not self.include_owner and owner_only(kind, tree_json):  # type: ignore[arg-type]
            return Analysis(text, kind, "owner")  # never applied: only renamed, for `full`
        node = _light_node(kind, tree_json)  # type: ignore[arg-type]
        if node is not None:
            analysis = self._classified(kind, node, text)
            analysis.tree_json = tree_json  # decoded in full only if a view may be involved
            return analysis
        node = json.loads(tree_json)["stmts"][0]["stmt"][kind]  # type: ignore[arg-type]
        return self._classified(kind, node, text)

    def _slow(self, raw: str, toks: list[parser.Token]) -> Analysis:
        """Parse the original statement, rename with its facts, then parse the renamed text."""
        first, last = toks[0].start, toks[-1].end + 1
        try:
            tree_json = parser.parse_sql_json(raw)
        except parser.ParseError as exc:
            return self._unknown(raw[first:last], f"cannot be parsed ({exc})")
        stmts = json.loads(tree_json)["stmts"]
        if len(stmts) != 1:
            return self._unknown(raw[first:last], "not a single statement")
        kind, node = next(iter(stmts[0]["stmt"].items()))
        renamed, warnings = self.renamer.rename_statement(raw, toks, kind, node, tree_json)
        text = renamed[first : len(renamed) - (len(raw) - last)]
        try:
            new_stmts = json.loads(parser.parse_sql_json(text))["stmts"]
        except parser.ParseError as exc:  # the rename broke it: keep it, the guard refuses it
            return self._unknown(text, f"cannot be parsed after renaming ({exc})", warnings)
        new_kind, new_node = next(iter(new_stmts[0]["stmt"].items()))
        analysis = self._classified(new_kind, new_node, text)
        if warnings:
            analysis.warnings = warnings + (analysis.warnings or [])
        return analysis

    def _unknown(self, text: str, why: str, warnings: list[str] | None = None) -> Analysis:
        short = " ".join(text.split())[:120]
        notes = [*(warnings or []), f"unknown statement kept in post ({why}): {short}"]
        return Analysis(
            text, "", "unknown", warnings=notes, violation=text_violation(text, self.check)
        )

    def _classified(self, kind: str, node: dict, text: str) -> Analysis:
        """Classify a renamed statement and check it with the guard's rules."""
        a = Analysis(text, kind, "")
        a.cls = cls = classify(kind, node, a, self.keys)
        if cls == "session":
            a.local = transaction_local(kind, text)
        else:
            if cls == "unknown":
                short = " ".join(text.split())[:120]
                a.warnings = [
                    f"unknown statement kept in post (statement type {kind} is not"
                    f" classified): {short}"
                ]
            if cls == "skipped":
                short = " ".join(text.split())[:200]
                a.warnings = [f"skipped, never applied ({INVENTORY[kind].why}): {short}"]
            elif cls != "session-dropped":
                a.violation = node_violation(kind, node, self.check)
        note_view_refs(kind, node, a, self.keys)
        return a


def _parse_or_none(text: str) -> str | None:
    """The JSON parse tree of a statement, None if it does not parse."""
    try:
        return parser.parse_sql_json(text)
    except parser.ParseError:
        return None


_DECODER = json.JSONDecoder()


def _light_node(kind: str, tree_json: str) -> dict | None:
    """The fields classification and the guard read, for the commonest large statements.

    CREATE TABLE and CREATE SEQUENCE trees are big (columns, options) but only their relation
    (and, when present, inheritance parents or OWNED BY) matters here: decode just that field,
    and fall back to the full tree whenever a key that matters is present. The keys are JSON
    keys of libpg_query's output, which string constants cannot fake (their quotes are escaped).
    """
    if kind == "CreateStmt":
        key, absent = '"relation":', ('"inhRelations":', '"ofTypename":')
    elif kind == "CreateSeqStmt":
        key, absent = '"sequence":', ('"defname":"owned_by"',)
    else:
        return None
    head = '{"stmt":{"' + kind + '":{'
    start = tree_json.find(head) + len(head)
    if not tree_json.startswith(key, start) or any(a in tree_json for a in absent):
        return None
    value, _ = _DECODER.raw_decode(tree_json, start + len(key))
    return {key.strip('":'): value}

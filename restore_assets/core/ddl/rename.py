"""Rename schemas inside SQL text by splicing scanner-token locations, guided by the AST.

A reference to a schema is an identifier token equal to the schema's name (unquoted names are
compared after ASCII down-casing, quoted ones exactly) that is *followed by a ``.`` token* and
is the first part of its dotted name: ``t1.tab``, ``"Tenant_X".f(...)``, ``OPERATOR(t1.+)``,
``t1.tab.col`` in ``OWNED BY`` (but not the table in ``t1.t1.col``). The AST removes the one
ambiguity: a two-part column reference (``t1.col``) names a table or alias, not a schema, so
``ColumnRef`` nodes with other than three fields are excluded. Besides those:

* string literals cast to a ``reg*`` type (``'t1.seq'::regclass``) and the first argument of
  ``nextval``/``currval``/``setval`` are rewritten inside the literal;
* the name list after a ``SCHEMA`` keyword (``CREATE SCHEMA t1``, ``GRANT ... ON SCHEMA t1``,
  ``COMMENT ON SCHEMA t1``, ``ALTER DEFAULT PRIVILEGES IN SCHEMA t1``) in statements that name
  schemas;
* ``search_path`` values (``SET search_path TO 't1', 'public'`` of functions, ``set_config``);
* bodies of ``LANGUAGE sql`` and ``plpgsql`` functions, by the same token rule applied to the
  body text (``LANGUAGE sql`` bodies are parsed too, to exclude column references).

Everything else (data strings, comment texts, other schemas, names sharing a prefix) is left
byte-for-byte as it was. Edits are spliced at scanner-token locations (tokens.py); function
bodies are handled in function_bodies.py, the parse-tree facts collected in tree_facts.py.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Iterable
from operator import itemgetter

from pglast import parser

from restore_assets.core.ddl.function_bodies import function_body, rewrite_body_token
from restore_assets.core.ddl.names import (
    ASCII_LOWER,
    decode_string_token,
    encode_string,
    ident_value,
    quote_ident,
    split_identifier_list,
)
from restore_assets.core.ddl.tokens import (
    COMMA,
    DOT,
    LPAREN,
    RPAREN,
    Edit,
    apply_edits,
    byte_to_char,
    is_identifier,
    token_word,
)
from restore_assets.core.ddl.tree_facts import NO_FACTS, TreeFacts, collect_facts

REG_TYPES = frozenset(
    {
        "regclass",
        "regtype",
        "regproc",
        "regprocedure",
        "regoper",
        "regoperator",
        "regconfig",
        "regdictionary",
        "regcollation",
        "regnamespace",
    }
)
SEQUENCE_FUNCTIONS = frozenset({"nextval", "currval", "setval"})
# statements in which a name after the SCHEMA keyword denotes a schema
SCHEMA_NAMING_STATEMENTS = frozenset(
    {
        "CreateSchemaStmt",
        "AlterOwnerStmt",
        "CommentStmt",
        "GrantStmt",
        "AlterDefaultPrivilegesStmt",
        "SecLabelStmt",
        "AlterObjectSchemaStmt",
        "CreateExtensionStmt",
        "RenameStmt",
        "DropStmt",
        "AlterExtensionStmt",
        "AlterPublicationStmt",
    }
)

_START = itemgetter(0)  # Token.start
# a reg* literal's value made of two plain identifiers (the SQL lexer could only read it as
# IDENT '.' IDENT); anything else goes through the scanner
_SIMPLE_QUALIFIED = re.compile(r"([a-z_][a-z0-9_$]*)\.[a-z_][a-z0-9_$]*\Z").match
EMPTY: frozenset[int] = frozenset()


class Renamer:
    """Rewrites references to the schemas in `renames` (old name -> new name)."""

    def __init__(self, renames: dict[str, str]):
        self.renames = dict(renames)
        self.quoted = {old: quote_ident(new) for old, new in self.renames.items()}
        # where a name token may start: "quoted" exactly, bare (ASCII-lowered) when it can be
        self._needles: list[tuple[str, bool]] = []
        for old in self.renames:
            self._needles.append(('"' + old.replace('"', '""') + '"', False))
            if old == old.translate(ASCII_LOWER) and old and '"' not in old:
                self._needles.append((old, True))
        # JSON of a column reference whose first part is spelled like a renamed schema
        colref = '"ColumnRef":{"fields":[{"String":{"sval":'
        self.colref_needles = [colref + json.dumps(o, ensure_ascii=False) for o in self.renames]
        self.new_colref_needles = [
            colref + json.dumps(n, ensure_ascii=False) for n in self.renames.values()
        ]
        words = "|".join(re.escape(old) for old in sorted(self.renames, key=len, reverse=True))
        self._mention = (
            re.compile(rf"(?<![\w$])(?:{words})(?![\w$])", re.IGNORECASE) if words else None
        )
        self._qualified = (
            re.compile(rf'(?<![\w$])"?(?:{words})"?\s*\.', re.IGNORECASE) if words else None
        )

    # -- small predicates -------------------------------------------------------------------
    def schema_token(self, text: str, tok: parser.Token) -> str | None:
        """The renamed schema this identifier token names, if any."""
        if not is_identifier(tok):
            return None
        value = ident_value(text[tok.start : tok.end + 1])
        return value if value in self.renames else None

    def needs_facts(self, tree_json: str, *, renamed: bool = False) -> bool:
        """True when the parse tree has search_path values or column refs spelled like a schema.

        With `renamed`, the tree is of a statement already renamed by tokens alone, and the
        question is whether that was enough: a column reference now spelled like a *new* schema
        name means a table or alias spelled like the old one may have been renamed.
        """
        if '"search_path"' in tree_json:
            return True
        for needle in self.new_colref_needles if renamed else self.colref_needles:
            if needle in tree_json:
                return True
        return False

    def mentions_qualified(self, value: str) -> bool:
        """True when a string uses one of the schemas as a qualifier ('t1.tab', '"T".x')."""
        return bool(self._qualified and self._qualified.search(value))

    def mentions(self, value: str) -> bool:
        """True when a string mentions one of the schemas as a word (used for warnings only)."""
        return bool(self._mention and self._mention.search(value))

    # -- token rules --------------------------------------------------------------------------
    def token_edits(
        self,
        text: str,
        toks: list[parser.Token],
        exclude: set[int] | frozenset[int] = frozenset(),
        *,
        schema_keyword: bool = False,
        skip: int = -1,
    ) -> tuple[list[Edit], set[int]]:
        """Edits for qualified names, reg* literals and SCHEMA lists; also the literal tokens used.

        `exclude` holds character indexes of identifier tokens that are not schema qualifiers;
        `skip` is the index of a token left alone (a function body handled separately).
        Only tokens that start where the text holds a schema name, ``::``, ``CAST`` or a
        sequence function are examined (found with str.find, located with bisect): the
        decisions are the scanner's, the search just avoids visiting every token.
        """
        n = len(toks)
        if not n:
            return [], set()
        lowered = text.lower() if text.isascii() else text.translate(ASCII_LOWER)
        edits: dict[int, Edit] = {}
        literal_tokens: set[int] = set()
        renames = self.renames
        for needle, in_lowered in self._needles:
            haystack = lowered if in_lowered else text
            pos = haystack.find(needle)
            while pos >= 0:
                i = bisect_left(toks, pos, key=_START)
                if i < n and toks[i][0] == pos:  # else inside a string, comment or longer name
                    tok = toks[i]
                    if (
                        (tok.name == "IDENT" or tok.kind != "NO_KEYWORD")
                        and i + 1 < n
                        and toks[i + 1].name == DOT
                        # only the first part of a dotted name can be the schema (t1.t1.c)
                        and not (i and toks[i - 1].name == DOT)
                        and pos not in exclude
                    ):
                        value = ident_value(text[pos : tok.end + 1])
                        if value in renames:
                            edits[pos] = (pos, tok.end + 1, self.quoted[value])
                pos = haystack.find(needle, pos + 1)
        for i in self._literal_candidates(text, lowered, toks):
            if i != skip and i not in literal_tokens and self._is_reg_literal(text, toks, i):
                literal_tokens.add(i)
                edit = self._reg_literal_edit(text, toks, i)
                if edit:
                    edits[edit[0]] = edit
        if schema_keyword:
            for i, tok in enumerate(toks):
                if tok.name == "SCHEMA":
                    for edit in self._schema_list(text, toks, i + 1):
                        edits[edit[0]] = edit
        return list(edits.values()), literal_tokens

    def _literal_candidates(self, text: str, lowered: str, toks: list[parser.Token]) -> list[int]:
        """Indexes of string tokens that may be reg* literals ('x'::regclass, nextval('x')...)."""
        searches = []
        if "::" in text:
            searches.append(("::", text, -1))
        if "cast" in lowered:
            searches.append(("cast", lowered, 2))
        if "val" in lowered:
            searches += [("nextval", lowered, 2), ("currval", lowered, 2), ("setval", lowered, 2)]
        found = []
        n = len(toks)
        for needle, haystack, offset in searches:
            pos = haystack.find(needle)
            while pos >= 0:
                i = bisect_left(toks, pos, key=_START)
                if i < n and toks[i][0] == pos and 0 <= i + offset < n:
                    if toks[i + offset].name == "SCONST":
                        found.append(i + offset)
                pos = haystack.find(needle, pos + 1)
        return found

    def _schema_list(self, text: str, toks: list[parser.Token], i: int) -> list[Edit]:
        n = len(toks)
        if i + 2 < n and [t.name for t in toks[i : i + 3]] == ["IF_P", "NOT", "EXISTS"]:
            i += 3
        edits: list[Edit] = []
        while i < n and is_identifier(toks[i]):
            tok = toks[i]
            nxt = toks[i + 1].name if i + 1 < n else None
            if nxt == DOT:
                break
            old = self.schema_token(text, tok)
            if old is not None:
                edits.append((tok.start, tok.end + 1, self.quoted[old]))
            if nxt != COMMA:
                break
            i += 2
        return edits

    def _reg_type_at(self, text: str, toks: list[parser.Token], j: int) -> str | None:
        """The reg* type named at toks[j] (``regclass`` or ``pg_catalog.regclass``)."""
        n = len(toks)
        if j < n and is_identifier(toks[j]):
            word = token_word(text, toks[j])
            if word == "pg_catalog" and j + 2 < n and toks[j + 1].name == DOT:
                word = token_word(text, toks[j + 2])
            return word if word in REG_TYPES else None
        return None

    def _is_reg_literal(self, text: str, toks: list[parser.Token], i: int) -> bool:
        n = len(toks)
        if i + 1 < n and toks[i + 1].name == "TYPECAST":
            return self._reg_type_at(text, toks, i + 2) is not None
        if i >= 2 and toks[i - 1].name == LPAREN:
            prev = toks[i - 2]
            if prev.name == "CAST" and i + 1 < n and toks[i + 1].name == "AS":
                return self._reg_type_at(text, toks, i + 2) is not None
            if is_identifier(prev) and token_word(text, prev) in SEQUENCE_FUNCTIONS:
                return i + 1 < n and toks[i + 1].name in (COMMA, RPAREN)
        return False

    def _reg_literal_edit(self, text: str, toks: list[parser.Token], i: int) -> Edit | None:
        tok = toks[i]
        raw = text[tok.start : tok.end + 1]
        decoded = decode_string_token(raw)
        if decoded is None:
            return None
        value, style = decoded
        if toks[i + 1].name in (COMMA, RPAREN):
            regtype = "regclass"  # nextval/currval/setval('...') without a cast
        else:
            regtype = self._reg_type_at(text, toks, i + 2)
        if regtype == "regnamespace":
            old = ident_value(value.strip())
            if old not in self.renames:
                return None
            new_value = self.quoted[old]
        else:
            simple = _SIMPLE_QUALIFIED(value)
            if simple:  # schema.name, both plain lower-case identifiers: nothing to scan
                old = simple.group(1)
                if old not in self.renames:
                    return None
                new_value = self.quoted[old] + value[simple.end(1) :]
            else:
                new_value = self.rewrite_code(value)
                if new_value == value:
                    return None
        return tok.start, tok.end + 1, encode_string(new_value, style)

    def rewrite_code(self, code: str, exclude_bytes: Iterable[int] = ()) -> str:
        """Apply the qualified-name rule to free SQL text (a reg* literal's or a body's content)."""
        try:
            toks = parser.scan(code)
        except parser.ParseError:
            return code
        conv = byte_to_char(code)
        exclude = {conv(b) for b in exclude_bytes}
        edits, _ = self.token_edits(code, toks, exclude)
        return apply_edits(code, edits) if edits else code

    def search_path_edit(self, text: str, tok: parser.Token) -> Edit | None:
        """Rewrite one search_path element (a bare name or a string holding a name list)."""
        raw = text[tok.start : tok.end + 1]
        if tok.name == "SCONST":
            decoded = decode_string_token(raw)
            if decoded is None:
                return None
            value, style = decoded
            elements = split_identifier_list(value)
            if not elements:
                return None
            parts: list[str] = []
            pos = 0
            for start, end, name in elements:
                if name in self.renames:
                    parts.append(value[pos:start])
                    parts.append(self.quoted[name])
                    pos = end
            if not parts:
                return None
            parts.append(value[pos:])
            return tok.start, tok.end + 1, encode_string("".join(parts), style)
        old = self.schema_token(text, tok)
        if old is None:
            return None
        return tok.start, tok.end + 1, self.quoted[old]

    # -- statements ----------------------------------------------------------------------------
    def rename_statement(
        self,
        text: str,
        toks: list[parser.Token],
        kind: str,
        node: dict | None,
        tree_json: str,
        facts: TreeFacts | None = None,
    ) -> tuple[str, list[str]]:
        """The statement with every reference to a renamed schema rewritten, plus warnings."""
        warnings: list[str] = []
        if facts is None:
            facts = collect_facts(node) if self.needs_facts(tree_json) else NO_FACTS
        conv = byte_to_char(text)
        exclude = {conv(b) for b in facts.colref_exclusions} if facts.colref_exclusions else EMPTY
        body_index = -1
        body: tuple[str, str, int] | None = None
        if kind == "CreateFunctionStmt":
            body = function_body(text, toks, node, conv)
            if body is not None:
                body_index = body[2]
        edits, _ = self.token_edits(
            text, toks, exclude, schema_keyword=kind in SCHEMA_NAMING_STATEMENTS, skip=body_index
        )
        if facts.search_path_args:
            by_start = {t.start: t for t in toks}
            for loc in facts.search_path_args:
                tok = by_start.get(conv(loc)) if loc >= 0 else None
                if tok is not None:
                    edit = self.search_path_edit(text, tok)
                    if edit:
                        edits = [e for e in edits if e[0] != edit[0]]
                        edits.append(edit)
        if body is not None:
            language, fname, index = body
            edit, body_warnings = rewrite_body_token(self, text, toks[index], language, fname)
            warnings += body_warnings
            if edit:
                edits.append(edit)
        return (apply_edits(text, edits) if edits else text), warnings

"""Function bodies: the schema rename inside ``LANGUAGE sql`` and ``plpgsql`` bodies.

A body is a string token of ``CREATE FUNCTION``; its text gets the same token rule as a statement
(``LANGUAGE sql`` bodies are parsed too, to exclude column references). Bodies in other languages
that mention a restored schema are left as they are, with a warning; so are string literals inside
a body that look like dynamic SQL (EXECUTE, format(), quote_ident(), to_regclass()...).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from pglast import parser

from restore_assets.core.ddl.names import decode_string_token, encode_string
from restore_assets.core.ddl.tokens import (
    DOT,
    LPAREN,
    Edit,
    apply_edits,
    byte_to_char,
    is_identifier,
    token_word,
)
from restore_assets.core.ddl.tree_facts import collect_facts

if TYPE_CHECKING:
    from restore_assets.core.ddl.rename import Renamer


REWRITTEN_LANGUAGES = frozenset({"sql", "plpgsql"})
# calls that turn strings into names at run time: a literal naming the schema next to them is
# dynamic SQL the renamer cannot follow
DYNAMIC_FUNCTIONS = frozenset(
    {
        "format",
        "quote_ident",
        "quote_literal",
        "quote_nullable",
        "set_config",
        "to_regclass",
        "to_regtype",
        "to_regproc",
        "to_regprocedure",
        "to_regnamespace",
        "to_regoper",
        "to_regoperator",
        "to_regcollation",
    }
)


def function_body(
    text: str, toks: list[parser.Token], node: dict, conv: Callable[[int], int]
) -> tuple[str, str, int] | None:
    """The language, name and token index of a CREATE FUNCTION's body string, or None."""
    language = "sql"
    as_loc = None
    as_items = 0
    for opt in node.get("options", ()):
        d = opt.get("DefElem", {})
        if d.get("defname") == "language":
            language = d.get("arg", {}).get("String", {}).get("sval", "").lower()
        elif d.get("defname") == "as":
            as_loc = d.get("arg_location", -1)
            as_items = len(d.get("arg", {}).get("List", {}).get("items", ()))
    if as_loc is None or as_loc < 0:
        return None
    start = conv(as_loc)
    for i, tok in enumerate(toks):
        if tok.start == start and tok.name == "SCONST":
            parts = [n.get("String", {}).get("sval", "?") for n in node.get("funcname", ())]
            fname = ".".join(parts)
            if as_items != 1:
                language = "c-object"
            return language, fname, i
    return None


def rewrite_body_token(
    renamer: Renamer, text: str, tok: parser.Token, language: str, fname: str
) -> tuple[Edit | None, list[str]]:
    """The edit of a function's body string token (decoded, rewritten, re-encoded), plus warnings."""
    raw = text[tok.start : tok.end + 1]
    decoded = decode_string_token(raw)
    if decoded is None:
        if renamer.mentions(raw):
            return None, [f"function {fname}: body quoting not supported; not renamed"]
        return None, []
    body, style = decoded
    if not renamer.mentions(body):
        return None, []
    if language not in REWRITTEN_LANGUAGES:
        return None, [
            f"function {fname}: LANGUAGE {language} body mentions a restored schema and is"
            " not rewritten; review it"
        ]
    new_body, warnings = rewrite_body(renamer, body, language, fname)
    if new_body == body:
        return None, warnings
    return (tok.start, tok.end + 1, encode_string(new_body, style)), warnings


def rewrite_body(renamer: Renamer, body: str, language: str, fname: str) -> tuple[str, list[str]]:
    """Rename qualified references in a sql/plpgsql body; warn about dynamic SQL."""
    warnings: list[str] = []
    try:
        toks = parser.scan(body)
    except parser.ParseError as exc:
        return body, [f"function {fname}: body could not be scanned ({exc}); not renamed"]
    exclude: set[int] = set()
    if language == "sql":
        try:
            tree = json.loads(parser.parse_sql_json(body))
            conv = byte_to_char(body)
            exclude = {conv(b) for b in collect_facts(tree).colref_exclusions}
        except parser.ParseError:
            pass
    edits, literal_tokens = renamer.token_edits(body, toks, exclude)
    mentioned: list[str] = []  # string literals naming a restored schema
    qualified_mention = False  # ... as a qualifier ('t1.tab'): SQL text in a string
    dynamic_code = False  # EXECUTE, format(), quote_ident(), to_regclass()...
    ambiguous = []
    for i, t in enumerate(toks):
        if t.name == "SCONST" and i not in literal_tokens:
            decoded = decode_string_token(body[t.start : t.end + 1])
            if decoded and renamer.mentions(decoded[0]):
                mentioned.append(decoded[0])
                qualified_mention = qualified_mention or renamer.mentions_qualified(decoded[0])
            continue
        if t.name == "EXECUTE" or (
            is_identifier(t)
            and i + 1 < len(toks)
            and toks[i + 1].name == LPAREN
            and token_word(body, t) in DYNAMIC_FUNCTIONS
        ):
            dynamic_code = True
        if language == "plpgsql" and renamer.schema_token(body, t) is not None:
            before = toks[i - 1].name if i else None
            after = toks[i + 1].name if i + 1 < len(toks) else None
            if after != DOT and before != DOT:
                ambiguous.append(body[t.start : t.end + 1])
    if mentioned and (dynamic_code or qualified_mention):
        sample = mentioned[0].strip().replace("\n", " ")[:80]
        warnings.append(
            f"function {fname}: string literal mentions a restored schema (dynamic SQL via"
            f" EXECUTE/format() is not renamed): {sample!r}"
        )
    if ambiguous:
        warnings.append(
            f"function {fname}: {ambiguous[0]!r} is also used as a plain name (variable or"
            " alias?) in the body; qualified references to it were renamed, review them"
        )
    return (apply_edits(body, edits) if edits else body), warnings

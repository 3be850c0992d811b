"""Identifier and literal helpers that follow PostgreSQL's own lexical rules.

Everything here works on single tokens already isolated by pglast's scanner: we never search
SQL text with patterns.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pglast.keywords import COL_NAME_KEYWORDS, RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS

from restore_assets.core.errors import DdlError, InvalidRequest

NAMEDATALEN = 64
MAX_IDENTIFIER_BYTES = NAMEDATALEN - 1
_QUOTE_KEYWORDS = frozenset(RESERVED_KEYWORDS | TYPE_FUNC_NAME_KEYWORDS | COL_NAME_KEYWORDS)
_SAFE_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz_")
_SAFE_REST = frozenset("abcdefghijklmnopqrstuvwxyz_0123456789")
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class TargetNameTooLong(InvalidRequest, DdlError):
    """The restored schema's name would exceed PostgreSQL's 63-byte identifier limit."""


def quote_ident(name: str) -> str:
    """Quote an identifier exactly when PostgreSQL's quote_ident() would."""
    if (
        name
        and name[0] in _SAFE_FIRST
        and all(c in _SAFE_REST for c in name)
        and name not in _QUOTE_KEYWORDS
    ):
        return name
    return '"' + name.replace('"', '""') + '"'


def ident_value(token_text: str) -> str | None:
    """The name an identifier token denotes (unquoted: ASCII-downcased), None if not decodable."""
    if token_text.startswith('"'):
        return token_text[1:-1].replace('""', '"')
    if token_text[:2] in ("U&", "u&"):
        return None
    return token_text.translate(ASCII_LOWER)


def qualified(schema: str, name: str) -> str:
    """schema.name, each part quoted only when needed."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def sql_literal(value: str) -> str:
    """A standard-conforming SQL string literal ('' doubles quotes; backslashes are plain)."""
    return "'" + value.replace("'", "''") + "'"


def decode_string_token(tok: str) -> tuple[str, str] | None:
    """(value, style) of an SCONST token; style is 'std', 'esc' or '$tag$'; None if unsupported.

    Handles standard strings (with SQL's adjacent-literal continuation), E'' strings and
    dollar-quoted strings. U&'' strings are reported as unsupported.
    """
    if tok.startswith("$"):
        end = tok.index("$", 1)
        tag = tok[: end + 1]
        return tok[len(tag) : len(tok) - len(tag)], tag
    escaped = tok[0] in "eE"
    if escaped:
        tok = tok[1:]
    if not tok.startswith("'"):
        return None
    out: list[str] = []
    i, n = 1, len(tok)
    while i < n:
        c = tok[i]
        if c == "'":
            if i + 1 < n and tok[i + 1] == "'":
                out.append("'")
                i += 2
                continue
            # end of one segment: adjacent literal separated by whitespace with a newline?
            j = i + 1
            while j < n and tok[j] in " \t\r\n\f":
                j += 1
            if j < n and tok[j] == "'":
                i = j + 1
                continue
            break
        if escaped and c == "\\" and i + 1 < n:
            i, ch = _escape(tok, i + 1)
            out.append(ch)
            continue
        out.append(c)
        i += 1
    return "".join(out), "esc" if escaped else "std"


_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _escape(tok: str, i: int) -> tuple[int, str]:
    c = tok[i]
    if c in _SIMPLE_ESCAPES:
        return i + 1, _SIMPLE_ESCAPES[c]
    if c in "01234567":
        j = i
        while j < min(i + 3, len(tok)) and tok[j] in "01234567":
            j += 1
        return j, chr(int(tok[i:j], 8))
    for prefix, width in (("x", 2), ("u", 4), ("U", 8)):
        if c == prefix:
            j = i + 1
            limit = j + width
            hexdigits = "0123456789abcdefABCDEF"
            while j < min(limit, len(tok)) and tok[j] in hexdigits:
                j += 1
            if j > i + 1:
                return j, chr(int(tok[i + 1 : j], 16))
    return i + 1, c


def encode_string(value: str, style: str) -> str:
    """Re-encode a string value in the quoting style it came with."""
    if style == "std":
        return sql_literal(value)
    if style == "esc":
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    tag = style
    n = 0
    while tag in value:
        n += 1
        tag = f"$ra{n}$"
    return f"{tag}{value}{tag}"


def split_identifier_list(value: str) -> list[tuple[int, int, str]] | None:
    """Elements of a comma-separated identifier list (like search_path) as (start, end, name).

    Mirrors PostgreSQL's SplitIdentifierString: double-quoted names keep their case, unquoted
    ones are ASCII-downcased and trimmed. None when the string is not such a list.
    """
    out: list[tuple[int, int, str]] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i].isspace():
            i += 1
        start = i
        if i < n and value[i] == '"':
            j = i + 1
            buf: list[str] = []
            while True:
                k = value.find('"', j)
                if k < 0:
                    return None
                buf.append(value[j:k])
                if k + 1 < n and value[k + 1] == '"':
                    buf.append('"')
                    j = k + 2
                    continue
                break
            i = k + 1
            name = "".join(buf)
        else:
            while i < n and value[i] != "," and not value[i].isspace():
                i += 1
            if i == start:
                return None if out or n else out
            name = value[start:i].translate(ASCII_LOWER)
        out.append((start, i, name))
        while i < n and value[i].isspace():
            i += 1
        if i >= n:
            return out
        if value[i] != ",":
            return None
        i += 1


def target_name(schema: str, suffix: str) -> str:
    """f"{schema}_{suffix}", refused when longer than PostgreSQL's 63-byte identifier limit."""
    if not suffix:
        raise InvalidRequest("the restore suffix is empty: give a suffix such as 20240131120000")
    name = f"{schema}_{suffix}"
    check_identifier_length(name, what=f"restored schema name for {schema!r}")
    return name


def check_identifier_length(name: str, *, what: str = "schema name") -> None:
    """Refuse names PostgreSQL would silently truncate to 63 bytes."""
    size = len(name.encode("utf-8"))
    if size > MAX_IDENTIFIER_BYTES:
        raise TargetNameTooLong(
            f"{what} {name!r} is {size} bytes long; PostgreSQL truncates identifiers to"
            f" {MAX_IDENTIFIER_BYTES} bytes, which could collide with another schema."
            f" Choose a suffix at least {size - MAX_IDENTIFIER_BYTES} byte(s) shorter."
        )


def default_suffix(restore_point: datetime) -> str:
    """YYYYMMDDHHMMSS of the restore point in UTC (a naive datetime is taken as UTC)."""
    if restore_point.tzinfo is None:
        restore_point = restore_point.replace(tzinfo=UTC)
    return restore_point.astimezone(UTC).strftime("%Y%m%d%H%M%S")

"""Scanner tokens of SQL text and the edits spliced at their locations.

pglast's scanner reports *character* indexes; the JSON parse tree reports *byte* offsets into
UTF-8 (``byte_to_char`` converts them). An edit is (start, end, replacement) in characters, end
exclusive; ``apply_edits`` splices a statement's edits into its text, which is otherwise left
byte-for-byte as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pglast import parser

DOT = "ASCII_46"
COMMA = "ASCII_44"
LPAREN = "ASCII_40"
RPAREN = "ASCII_41"

Edit = tuple[int, int, str]


def is_identifier(tok: parser.Token) -> bool:
    """True for tokens that can be a name: identifiers and (any kind of) keywords."""
    return tok.name == "IDENT" or tok.kind != "NO_KEYWORD"


def _identity(offset: int) -> int:
    return offset


def byte_to_char(text: str) -> Callable[[int], int]:
    """A function mapping byte offsets of text's UTF-8 encoding to character indexes."""
    if text.isascii():
        return _identity
    table: list[int] = []
    for i, ch in enumerate(text):
        table.extend([i] * len(ch.encode("utf-8")))
    table.append(len(text))
    return lambda offset: table[offset]


def apply_edits(text: str, edits: Iterable[Edit]) -> str:
    """Splice (start, end, replacement) edits (character indexes, end exclusive) into text."""
    out: list[str] = []
    pos = 0
    for start, end, repl in sorted(edits):
        if start < pos:  # overlapping edits would mean two rules claim one token
            raise ValueError(f"overlapping edits at {start}")
        out.append(text[pos:start])
        out.append(repl)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def token_word(text: str, tok: parser.Token) -> str:
    """The token's text, lower-cased (a keyword, type or function name as written)."""
    return text[tok.start : tok.end + 1].lower()

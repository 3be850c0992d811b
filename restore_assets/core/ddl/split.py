"""Split a pg_dump --schema-only script into pre/post/full statement lists, renamed.

Each statement is handled on its own (``analyze``): renamed at scanner-token locations (see
``rename``), then its renamed text is parsed (pglast's JSON parse tree), classified by node type
(``classify``, never by text patterns) and checked with the guard's rules (``bundle.violations``).
A statement whose renaming needs the parse tree first (column references spelled like the schema,
``search_path`` values, function bodies, ``SCHEMA`` clauses) is parsed before and after renaming.
This module places the statements in dump order and assembles the lists (with ``views`` for the
view repair and ``sequences`` for the ``setval`` calls):

* *pre* (applied before the data is copied): schemas, types, domains, functions, procedures,
  aggregates, operators, collations, text search objects, sequences and ``OWNED BY``, tables
  (with their inline NOT NULL / DEFAULT / CHECK / generated columns), column defaults, identity
  columns, partitions attached, and PRIMARY KEYs;
* *post* (after the data): unique, check, exclusion and foreign-key constraints, indexes and
  ``ALTER INDEX ... ATTACH PARTITION``, triggers, rules, views and materialized views, RLS and
  policies, comments, security labels, grants, default privileges, extended statistics, ownership
  when asked, then ``REFRESH MATERIALIZED VIEW`` for every materialized view and ``setval`` for
  every sequence;
* *full*: every statement of the dump, renamed, in dump order (the audit copy).

pg_dump's order is kept inside each list: pg_dump already sorts by dependency. Two exceptions
are repaired: a view that a *pre* statement depends on (a ``BEGIN ATOMIC`` function reading it, a
function returning its row type) moves to *pre* with the views it reads; and a function pg_dump
postponed into its post-data section (it depends on a constraint or index, e.g. ``ON CONFLICT``
in a ``BEGIN ATOMIC`` body) stays in *post*. Statements the splitter does not know go to *post*
and are listed in ``unknown``: never dropped, and refused by the guard when their kind is not in its
inventory (``extract`` then stops before anything is created). Statements that attach a restored
object to something outside the schemas (the guard's *skip* rule) are in ``full`` and ``skipped``
only, each with a warning: never applied.

Session settings of the dump's header (``search_path = ''``, ``check_function_bodies = false``,
``standard_conforming_strings``...) are kept, as transaction-local settings, at the start of both
*pre* and *post* (and wherever the dump changes them, e.g. ``default_tablespace``); pg_dump's
``statement_timeout``/``lock_timeout`` resets are dropped because ``apply()`` owns the timeouts.
Statements are stored *without* a trailing semicolon; the ``*_sql`` properties join them into
runnable scripts.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

from pglast import parser

from restore_assets.core.ddl.analyze import Analyzer
from restore_assets.core.ddl.classify import Analysis, Key
from restore_assets.core.ddl.guard import text_violation, violation_message
from restore_assets.core.ddl.names import check_identifier_length, quote_ident
from restore_assets.core.ddl.sequences import SequenceValues, setval_statements
from restore_assets.core.ddl.views import ViewOrder, refresh_statements
from restore_assets.core.errors import DdlError, GuardViolation


def _script(statements: list[str], *, transaction: bool) -> str:
    body = "".join(f"{s};\n\n" for s in statements)
    return f"BEGIN;\n\n{body}COMMIT;\n" if transaction else body


@dataclass
class DdlBundle:
    """A renamed dump split for a restore. Statements carry no trailing semicolon.

    ``pre``/``post`` are applied each in one transaction (see ``apply``); their session settings
    are transaction-local (``SET LOCAL``), so ``pre_sql``/``post_sql`` wrap them in
    ``BEGIN``/``COMMIT``. ``full`` is the whole dump renamed, for audit (``full_sql`` is a plain
    script). ``warnings`` are for the operator (dynamic SQL in function bodies...); ``unknown``
    lists statements the splitter did not recognise (they are in ``post``); ``violations`` lists
    the statements of pre/post that the guard refuses for ``target_schemas``; ``skipped`` lists the
    statements that attach a restored object to something outside the schemas (``ALTER
    PUBLICATION ... ADD TABLE``, ``... DEPENDS ON EXTENSION``): never applied, each also in
    ``warnings`` so it reaches the plan, the audit and the report.
    """

    pre: list[str]
    post: list[str]
    full: list[str]
    warnings: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    renames: dict[str, str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def check_guard(self) -> None:
        """Raise GuardViolation if a pre/post statement breaks the guard (checked while building).

        build_bundle applies the guard's rules to the parse tree of every final pre/post
        statement (the tree it classifies with), so this costs nothing; ``guard()`` re-checks
        any list of statement texts independently.
        """
        if self.violations:
            more = f" (and {len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
            raise GuardViolation(self.violations[0] + more)

    @property
    def target_schemas(self) -> set[str]:
        """The schemas this bundle creates (what the guard allows)."""
        return set(self.renames.values())

    @property
    def pre_sql(self) -> str:
        """The pre statements as one transaction, runnable with psql."""
        return _script(self.pre, transaction=True)

    @property
    def post_sql(self) -> str:
        """The post statements as one transaction, runnable with psql."""
        return _script(self.post, transaction=True)

    @property
    def full_sql(self) -> str:
        """The whole renamed dump as a plain script."""
        return _script(self.full, transaction=False)


@dataclass(slots=True)
class _Entry:
    cls: str  # session | session-dropped | pre | post | owner | skipped | unknown
    text: str
    local: str | None = None  # the transaction-local form of a session statement


class _Builder:
    """Puts analyses together in dump order: what depends on the statements before."""

    def __init__(
        self,
        renames: dict[str, str],
        sequence_values: SequenceValues | None,
        include_owner: bool,
        unpopulated_matviews: set[Key] | None,
    ):
        self.renames = renames
        self.analyzer = Analyzer(renames, include_owner)
        self.check = self.analyzer.check
        self.sequence_values = sequence_values
        self.include_owner = include_owner
        self.unpopulated = unpopulated_matviews or set()
        self.entries: list[_Entry] = []
        self.warnings: list[str] = []
        self.violations: list[tuple[str, str]] = []
        self.sequences: list[Key] = []
        self.matviews: list[Key] = []
        self.views = ViewOrder(self.analyzer.keys, self.entries, self.warnings)
        self.schemas_created: set[str] = set()
        self.in_post_data = False

    def add(self, a: Analysis) -> None:
        """Place one analyzed statement, given everything placed before it."""
        if a.warnings:
            self.warnings += a.warnings
        cls = a.cls
        if cls == "pre":
            if a.kind == "CreateFunctionStmt" and self.in_post_data:
                cls = "post"  # pg_dump postponed it: it depends on a post-data object
            elif a.relation is not None and a.relation in self.views:
                cls = "post"  # e.g. a view column's DEFAULT: follows the view
        if a.marks_post_data:
            self.in_post_data = True
        if a.sequences:
            self.sequences += a.sequences
        if a.matview is not None and a.matview not in self.unpopulated:
            self.matviews.append(a.matview)
        if a.schema_created is not None:
            self.schemas_created.add(a.schema_created)
        if a.violation and (cls != "owner" or self.include_owner):
            self.violations.append((a.text, a.violation))
        index = len(self.entries)
        self.entries.append(_Entry(cls, a.text, a.local))
        self.views.place(a, cls, index, self.in_post_data)

    # -- assembly ---------------------------------------------------------------------------------
    def finish(self) -> DdlBundle:
        """Assemble pre, post and full; add CREATE SCHEMA if missing, REFRESH and setval."""
        pre: list[str] = []
        post: list[str] = []
        full: list[str] = []
        unknown: list[str] = []
        skipped: list[str] = []
        header_done = False
        header_len = 0
        generated: list[str] = []
        for e in self.entries:
            full.append(e.text)
            if e.cls == "session":
                pre.append(e.local or e.text)
                post.append(e.local or e.text)
                generated.append(e.local or e.text)
                if not header_done:
                    header_len = len(pre)
                continue
            if e.cls == "session-dropped":
                continue
            header_done = True
            if e.cls == "pre":
                pre.append(e.text)
            elif e.cls == "post":
                post.append(e.text)
            elif e.cls == "owner":
                if self.include_owner:
                    post.append(e.text)
            elif e.cls == "skipped":
                skipped.append(e.text)
            else:
                post.append(e.text)
                unknown.append(e.text)
        settings = self._ensure_settings(pre, post, header_len)
        header_len += len(settings)
        generated += settings
        missing = [s for s in self.renames if s not in self.schemas_created]
        for offset, old in enumerate(missing):
            stmt = f"CREATE SCHEMA {quote_ident(self.renames[old])}"
            pre.insert(header_len + offset, stmt)
            generated.append(stmt)
            self.warnings.append(
                f"the dump has no CREATE SCHEMA for {old!r}; pre creates {self.renames[old]!r}"
            )
        tail = refresh_statements(self.matviews, self.renames)
        setvals, setval_warnings = setval_statements(
            self.sequences, self.sequence_values, self.renames
        )
        tail += setvals
        self.warnings += setval_warnings
        post += tail
        for stmt in generated + tail:  # statements not from the dump pass the same rules
            reason = text_violation(stmt, self.check)
            if reason:
                self.violations.append((stmt, reason))
        violations = [
            violation_message(reason, text, self.check.allowed) for text, reason in self.violations
        ]
        return DdlBundle(
            pre, post, full, self.warnings, unknown, dict(self.renames), violations, skipped
        )

    def _ensure_settings(self, pre: list[str], post: list[str], header_len: int) -> list[str]:
        """Dumps without pg_dump's header still get search_path '' and no body checks."""
        header = " ".join(pre[:header_len]).lower()
        needed = []
        if "search_path" not in header:
            needed.append("SELECT pg_catalog.set_config('search_path', '', true)")
        if "check_function_bodies" not in header:
            needed.append("SET LOCAL check_function_bodies = false")
        for i, stmt in enumerate(needed):
            pre.insert(i, stmt)
            post.insert(i, stmt)
        return needed


def strip_restrict(dump: str) -> str:
    r"""Remove pg_dump's ``\restrict KEY`` / ``\unrestrict KEY`` psql meta-command lines.

    Only lines carrying the key announced by the first ``\restrict`` line are removed, so a
    function body that happens to contain such text is never touched.
    """
    lines = dump.split("\n")
    key = None
    for line in lines:
        if line.startswith("\\restrict "):
            key = line[len("\\restrict ") :].strip()
            break
        if line and not line.startswith("--"):
            break
    if key is None:
        return dump
    drop = {f"\\restrict {key}", f"\\unrestrict {key}"}
    return "\n".join(line for line in lines if line.rstrip("\r") not in drop)


def _split(dump_sql: str) -> list[str]:
    """Statements of a script: the parser's split, or a token split when a statement is broken."""
    try:
        return list(parser.split(dump_sql))
    except parser.ParseError:
        return _split_tokens(dump_sql)


def _split_tokens(dump_sql: str) -> list[str]:
    """Split at top-level ';' tokens (not inside BEGIN ATOMIC ... END); never drops text.

    Used only when the parser cannot split the script (pglast's scanner-based split stops at the
    first broken statement): every statement still reaches the bundle, the broken ones as unknown.
    """
    try:
        toks = parser.scan(dump_sql)
    except parser.ParseError as exc:
        raise DdlError(f"the dump cannot be tokenized: {exc}") from exc
    pieces: list[str] = []  # the text between top-level ';', blank ones included
    start = 0
    atomic = 0  # nesting inside BEGIN ATOMIC ... END (CASE ... END nests too)
    for i, tok in enumerate(toks):
        name = tok.name
        if name == "BEGIN_P" and i + 1 < len(toks) and toks[i + 1].name == "ATOMIC":
            atomic += 1
        elif atomic and name == "CASE":
            atomic += 1
        elif atomic and name == "END_P":
            atomic -= 1
        elif name == "ASCII_59" and not atomic:
            pieces.append(dump_sql[start : tok.start])
            start = tok.end + 1
    pieces.append(dump_sql[start:])
    return [piece for piece in pieces if piece.strip()]


def build_bundle(
    dump_sql: str,
    renames: dict[str, str],
    sequence_values: SequenceValues | None = None,
    *,
    include_owner: bool = False,
    unpopulated_matviews: set[Key] | None = None,
) -> DdlBundle:
    """Split a schema-only dump into pre/post/full, renaming schemas and adding setval calls."""
    if not renames:
        raise DdlError("no schema to rename: give at least one {schema: new_name}")
    for old, new in renames.items():
        check_identifier_length(new, what=f"restored schema name for {old!r}")
        if old == new:
            raise DdlError(f"schema {old!r} would be restored onto itself; choose a suffix")
    builder = _Builder(renames, sequence_values, include_owner, unpopulated_matviews)
    # tens of thousands of short-lived parse trees and no reference cycles: the cyclic garbage
    # collector would only re-scan the growing bundle, so it is paused while building
    collecting = gc.isenabled()
    gc.disable()
    try:
        analyzer = builder.analyzer
        for raw in _split(strip_restrict(dump_sql)):
            analysis = analyzer.analyze(raw)
            if analysis is not None:
                builder.add(analysis)
        return builder.finish()
    finally:
        if collecting:
            gc.enable()

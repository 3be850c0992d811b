"""Split a pg_dump --schema-only script into pre/post/full statement lists, renamed.

Each statement is handled on its own: renamed at scanner-token locations (see ``rename``), then
its renamed text is parsed (pglast's JSON parse tree), classified by node type (never by text
patterns) and checked with the guard's rules (``bundle.violations``). A statement whose renaming
needs the parse tree first (column references spelled like the schema, ``search_path`` values,
function bodies, ``SCHEMA`` clauses) is parsed before and after renaming. The lists:

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
import json
from dataclasses import dataclass, field

from pglast import parser

from restore_assets.core.ddl.guard import (
    AT_POST,
    AT_PRE,
    INVENTORY,
    SKIPPED_KINDS,
    SchemaCheck,
    node_violation,
    text_violation,
    violation_message,
)
from restore_assets.core.ddl.names import (
    check_identifier_length,
    qualified,
    quote_ident,
    sql_literal,
)
from restore_assets.core.ddl.rename import (
    SCHEMA_NAMING_STATEMENTS,
    Renamer,
    apply_edits,
    collect_facts,
)
from restore_assets.core.errors import DdlError, GuardViolation

SESSION_DROPPED = frozenset(
    {
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "idle_session_timeout",
        "transaction_timeout",
    }
)
PRE_KINDS = frozenset(
    {
        "CreateSchemaStmt",
        "CreateEnumStmt",
        "AlterEnumStmt",
        "CompositeTypeStmt",
        "CreateRangeStmt",
        "CreateDomainStmt",
        "CreateFunctionStmt",
        "CreateSeqStmt",
        "AlterSeqStmt",
        "CreateStmt",
        "CreateForeignTableStmt",
        "DefineStmt",
        "CreateConversionStmt",
        "CreateOpClassStmt",
        "CreateOpFamilyStmt",
        "AlterOpFamilyStmt",
        "AlterTSConfigurationStmt",
        "AlterTSDictionaryStmt",
    }
)
POST_KINDS = frozenset(
    {
        "IndexStmt",
        "CreateTrigStmt",
        "ViewStmt",
        "RuleStmt",
        "CreatePolicyStmt",
        "AlterPolicyStmt",
        "CommentStmt",
        "SecLabelStmt",
        "GrantStmt",
        "AlterDefaultPrivilegesStmt",
        "CreateStatsStmt",
        "AlterStatsStmt",
        "RefreshMatViewStmt",
    }
)
# constraints that pg_dump always places in its post-data section
POST_DATA_CONSTRAINTS = frozenset(
    {"CONSTR_PRIMARY", "CONSTR_UNIQUE", "CONSTR_FOREIGN", "CONSTR_EXCLUSION"}
)
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


# statements renamed with the original statement's parse tree (function bodies, DO blocks)
ORIGINAL_TREE_KINDS = frozenset({"CreateFunctionStmt", "DoStmt"})


def _kind(tree_json: str) -> str | None:
    """The node type of a one-statement parse tree, read from its JSON text; None if unsure."""
    marker = '{"stmt":{"'
    at = tree_json.find(marker)
    if at < 0 or tree_json.find(marker, at + 1) >= 0:
        return None
    start = at + len(marker)
    return tree_json[start : tree_json.index('"', start)]


WHITESPACE_OR_DASH = frozenset(" \t\r\n\f-")


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


def _table_type_refs(node: dict) -> list[tuple[str, str]]:
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


def _names(items: list[dict]) -> list[str]:
    return [i["String"]["sval"] for i in items if "String" in i]


@dataclass(slots=True)
class _Analysis:
    """What one statement contributes, computed from that statement alone."""

    text: str  # renamed, without leading comments and trailing semicolon
    kind: str
    cls: str  # session | session-dropped | pre | post | owner | unknown
    local: str | None = None  # transaction-local form of a session setting
    warnings: list[str] | None = None
    violation: str | None = None  # the guard's verdict on the renamed statement
    marks_post_data: bool = False  # pg_dump's post-data section has begun
    sequences: list[tuple[str, str]] | None = None  # (source schema, name)
    matview: tuple[str, str] | None = None  # created WITH NO DATA
    schema_created: str | None = None
    view: tuple[tuple[str, str], list[tuple[str, str]]] | None = None  # key, what it reads
    refs: list[tuple[str, str]] | None = None  # relations/types a pre statement needs
    relation: tuple[str, str] | None = None  # ALTER TABLE's target
    tree_json: str | None = None  # set when only part of the tree was decoded (see _light_node)


class _Analyzer:
    """Renames, parses, classifies and guards single statements (no state across statements)."""

    def __init__(self, renames: dict[str, str], include_owner: bool = False):
        self.include_owner = include_owner
        self.original = {new: old for old, new in renames.items()}
        self.renamer = Renamer(renames)
        self.check = SchemaCheck(set(renames.values()))

    def key(self, schema: str | None, name: str | None) -> tuple[str, str]:
        """(source schema, name) of a name read from a renamed parse tree."""
        schema = schema or ""
        return self.original.get(schema, schema), name or ""

    def rv_key(self, rv: dict | None) -> tuple[str, str] | None:
        """(source schema, name) of a RangeVar of a renamed parse tree."""
        if not rv:
            return None
        return self.key(rv.get("schemaname"), rv.get("relname"))

    # -- one statement ------------------------------------------------------------------------
    def analyze(self, raw: str) -> _Analysis | None:
        """The analysis of one statement of the dump; None for an empty one."""
        prepared = self.prepare(raw)
        if prepared is None or isinstance(prepared, _Analysis):
            return prepared
        return self.complete(prepared, _parse_or_none(prepared[2]))

    def prepare(self, raw: str) -> tuple[str, list[parser.Token], str] | _Analysis | None:
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

    def complete(
        self, prepared: tuple[str, list[parser.Token], str], tree_json: str | None
    ) -> _Analysis:
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
        if not self.include_owner and _owner_only(kind, tree_json):  # type: ignore[arg-type]
            return _Analysis(text, kind, "owner")  # never applied: only renamed, for `full`
        node = _light_node(kind, tree_json)  # type: ignore[arg-type]
        if node is not None:
            analysis = self._classified(kind, node, text)
            analysis.tree_json = tree_json  # decoded in full only if a view may be involved
            return analysis
        node = json.loads(tree_json)["stmts"][0]["stmt"][kind]  # type: ignore[arg-type]
        return self._classified(kind, node, text)

    def _slow(self, raw: str, toks: list[parser.Token]) -> _Analysis:
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

    def _unknown(self, text: str, why: str, warnings: list[str] | None = None) -> _Analysis:
        short = " ".join(text.split())[:120]
        notes = [*(warnings or []), f"unknown statement kept in post ({why}): {short}"]
        return _Analysis(
            text, "", "unknown", warnings=notes, violation=text_violation(text, self.check)
        )

    def _classified(self, kind: str, node: dict, text: str) -> _Analysis:
        """Classify a renamed statement and check it with the guard's rules."""
        a = _Analysis(text, kind, "")
        a.cls = cls = self.classify(kind, node, a)
        if cls == "session":
            a.local = _local(kind, text)
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
        if kind == "ViewStmt" or (
            kind == "CreateTableAsStmt" and node.get("objtype") == "OBJECT_MATVIEW"
        ):
            facts = collect_facts(node, refs=True)
            key = self.rv_key(node.get("view") or node.get("into", {}).get("rel"))
            if key:
                a.view = (key, [self.key(*r) for r in facts.rangevars + facts.typenames])
        elif cls == "pre" and kind in VIEW_DEPENDENT_KINDS:
            if kind == "CreateStmt":
                refs = _table_type_refs(node)
            else:
                facts = collect_facts(node, refs=True)
                refs = facts.rangevars + facts.typenames
            a.refs = [self.key(*r) for r in refs]
        return a

    # -- classification (over the parse tree of the renamed statement) ----------------------
    def classify(self, kind: str, node: dict, a: _Analysis) -> str:
        """session, session-dropped, pre, post, owner or unknown; notes sequences and views."""
        if kind == "VariableSetStmt":
            if node.get("kind") not in ("VAR_SET_VALUE", "VAR_SET_DEFAULT") or node.get("name") in (
                "role",
                "session_authorization",
            ):
                return "unknown"
            return "session-dropped" if node.get("name") in SESSION_DROPPED else "session"
        if kind == "SelectStmt":
            targets = node.get("targetList", [])
            call = (
                targets[0].get("ResTarget", {}).get("val", {}).get("FuncCall") if targets else None
            )
            fname = _names(call.get("funcname", [])) if call else []
            if len(targets) == 1 and fname and fname[-1] == "set_config":
                return "session"
            if len(targets) == 1 and fname and fname[-1] == "setval":
                return "post"
            return "unknown"
        if kind == "AlterOwnerStmt":
            return "owner"
        if kind in SKIPPED_KINDS:
            return "skipped"
        if kind == "AlterTableStmt":
            return self._classify_alter_table(node, a)
        if kind == "CreateTableAsStmt":
            if node.get("objtype") != "OBJECT_MATVIEW":
                return "unknown"
            if node.get("into", {}).get("skipData"):
                a.matview = self.rv_key(node.get("into", {}).get("rel"))
            return "post"
        if kind == "AlterDomainStmt":
            return "post" if node.get("subtype") in ("C", "V") else "unknown"
        if kind in PRE_KINDS:
            if kind == "CreateSchemaStmt":
                a.schema_created = self.key(node.get("schemaname"), "")[0]
            elif kind == "CreateSeqStmt":
                key = self.rv_key(node.get("sequence"))
                if key:
                    a.sequences = [key]
            return "pre"
        if kind in POST_KINDS:
            if kind in ("IndexStmt", "CreateTrigStmt", "RuleStmt", "CreatePolicyStmt"):
                a.marks_post_data = True
            return "post"
        return "unknown"

    def _classify_alter_table(self, node: dict, a: _Analysis) -> str:
        objtype = node.get("objtype", "OBJECT_TABLE")
        classes = set()
        for cmd in node.get("cmds", []):
            c = cmd.get("AlterTableCmd", {})
            sub = c.get("subtype")
            if sub == "AT_ChangeOwner":
                classes.add("owner")
            elif sub == "AT_AddConstraint":
                contype = c.get("def", {}).get("Constraint", {}).get("contype")
                if contype in POST_DATA_CONSTRAINTS:
                    a.marks_post_data = True
                classes.add("pre" if contype in ("CONSTR_PRIMARY", "CONSTR_NOTNULL") else "post")
            elif sub == "AT_AddIdentity":
                options = c.get("def", {}).get("Constraint", {}).get("options", [])
                for opt in options:
                    d = opt.get("DefElem", {})
                    if d.get("defname") == "sequence_name":
                        names = _names(d.get("arg", {}).get("List", {}).get("items", []))
                        if len(names) == 2:
                            a.sequences = [*(a.sequences or []), self.key(names[0], names[1])]
                classes.add("pre")
            elif sub in AT_PRE:
                classes.add("pre")
            elif sub in AT_POST:
                classes.add("post")
            else:
                classes.add("unknown")
        if classes == {"owner"}:
            return "owner"
        classes.discard("owner")
        if "unknown" in classes:
            return "unknown"
        if objtype in ("OBJECT_INDEX", "OBJECT_VIEW", "OBJECT_MATVIEW"):
            return "post"
        a.relation = self.rv_key(node.get("relation"))
        return "post" if "post" in classes else "pre"


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


def _owner_only(kind: str, tree_json: str) -> bool:
    """True for ALTER ... OWNER TO statements (one command), read from the parse tree's JSON.

    The markers are JSON keys, which a string constant cannot fake (its quotes are escaped).
    """
    if kind == "AlterOwnerStmt":
        return True
    return (
        kind == "AlterTableStmt"
        and '{"AlterTableCmd":{"subtype":"AT_ChangeOwner"' in tree_json
        and tree_json.count('{"AlterTableCmd":') == 1
    )


def _local(kind: str, text: str) -> str:
    """The transaction-local form of a session setting (SET LOCAL / set_config(..., true))."""
    toks = parser.scan(text)
    if kind == "VariableSetStmt":
        end = toks[0].end + 1
        return f"{text[:end]} LOCAL{text[end:]}"
    if len(toks) >= 2 and toks[-1].name == "ASCII_41" and toks[-2].name == "FALSE_P":
        t = toks[-2]
        return f"{text[: t.start]}true{text[t.end + 1 :]}"
    return text


class _Builder:
    """Puts analyses together in dump order: what depends on the statements before."""

    def __init__(
        self,
        renames: dict[str, str],
        sequence_values: dict[tuple[str, str], tuple[int, bool]] | None,
        include_owner: bool,
        unpopulated_matviews: set[tuple[str, str]] | None,
    ):
        self.renames = renames
        self.analyzer = _Analyzer(renames, include_owner)
        self.check = self.analyzer.check
        self.sequence_values = sequence_values
        self.include_owner = include_owner
        self.unpopulated = unpopulated_matviews or set()
        self.entries: list[_Entry] = []
        self.warnings: list[str] = []
        self.violations: list[tuple[str, str]] = []
        self.sequences: list[tuple[str, str]] = []
        self.matviews: list[tuple[str, str]] = []
        self.views: dict[tuple[str, str], tuple[int, list[tuple[str, str]]]] = {}
        self.schemas_created: set[str] = set()
        self.in_post_data = False

    def add(self, a: _Analysis) -> None:
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
        if a.view is not None:
            if not self.in_post_data:
                self.views[a.view[0]] = (index, a.view[1])
        elif cls == "pre" and self.views and (a.refs or a.tree_json):
            refs = a.refs
            if a.tree_json is not None:  # a CREATE TABLE decoded in part: its column types now
                node = json.loads(a.tree_json)["stmts"][0]["stmt"][a.kind]
                refs = [self.analyzer.key(*r) for r in _table_type_refs(node)]
            for ref in refs or ():
                self._promote(ref, index)

    def _promote(self, key: tuple[str, str], before: int) -> None:
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
        tail = [
            f"REFRESH MATERIALIZED VIEW {qualified(self.renames[schema], name)}"
            for schema, name in self.matviews
            if schema in self.renames
        ]
        tail += self._setvals()
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

    def _setvals(self) -> list[str]:
        values = self.sequence_values
        if values is None:
            if self.sequences:
                self.warnings.append(
                    "no sequence values given: sequences of the restored schema start afresh"
                )
            return []
        out = []
        known = set(self.sequences)
        for schema, seq in self.sequences:
            if schema not in self.renames:
                continue
            if (schema, seq) not in values:
                self.warnings.append(f"no value read for sequence {schema}.{seq}; not set")
                continue
            last_value, is_called = values[(schema, seq)]
            target = sql_literal(qualified(self.renames[schema], seq))
            called = "true" if is_called else "false"
            out.append(f"SELECT pg_catalog.setval({target}, {int(last_value)}, {called})")
        for schema, seq in values:
            if schema in self.renames and (schema, seq) not in known:
                self.warnings.append(
                    f"sequence {schema}.{seq} has a value but is not in the dump; not set"
                )
        return out


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
    out: list[str] = []
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
            if dump_sql[start : tok.start].strip():
                out.append(dump_sql[start : tok.start])
            start = tok.end + 1
    if dump_sql[start:].strip():
        out.append(dump_sql[start:])
    return out


def build_bundle(
    dump_sql: str,
    renames: dict[str, str],
    sequence_values: dict[tuple[str, str], tuple[int, bool]] | None = None,
    *,
    include_owner: bool = False,
    unpopulated_matviews: set[tuple[str, str]] | None = None,
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

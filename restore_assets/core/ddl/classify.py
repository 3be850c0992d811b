"""Classify one renamed statement of a dump by its parse tree's node type (never by text patterns).

The classes: *session* (a setting of the dump's header, kept as a transaction-local setting),
*session-dropped* (timeouts: ``apply()`` owns them), *pre* (before the data), *post* (after the
data), *owner* (``ALTER ... OWNER TO``, applied only when asked), *skipped* (the guard's *skip*
rule: listed, never applied) and *unknown* (kept in *post*, refused by the guard when its kind is
not in the inventory). See ``split`` for what each list holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from pglast import parser

from restore_assets.core.ddl.inventory import AT_POST, AT_PRE, SKIPPED_KINDS

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

Key = tuple[str, str]  # (source schema, name)


@dataclass(slots=True)
class Analysis:
    """What one statement contributes, computed from that statement alone."""

    text: str  # renamed, without leading comments and trailing semicolon
    kind: str
    cls: str  # session | session-dropped | pre | post | owner | skipped | unknown
    local: str | None = None  # transaction-local form of a session setting
    warnings: list[str] | None = None
    violation: str | None = None  # the guard's verdict on the renamed statement
    marks_post_data: bool = False  # pg_dump's post-data section has begun
    sequences: list[Key] | None = None
    matview: Key | None = None  # created WITH NO DATA
    schema_created: str | None = None
    view: tuple[Key, list[Key]] | None = None  # key, what it reads
    refs: list[Key] | None = None  # relations/types a pre statement needs
    relation: Key | None = None  # ALTER TABLE's target
    tree_json: str | None = None  # set when only part of the tree was decoded (see analyze)


class SourceKeys:
    """(source schema, name) of names read from the parse tree of a renamed statement."""

    def __init__(self, renames: dict[str, str]):
        self.original = {new: old for old, new in renames.items()}

    def key(self, schema: str | None, name: str | None) -> Key:
        """(source schema, name) of a name read from a renamed parse tree."""
        schema = schema or ""
        return self.original.get(schema, schema), name or ""

    def rv_key(self, rv: dict | None) -> Key | None:
        """(source schema, name) of a RangeVar of a renamed parse tree."""
        if not rv:
            return None
        return self.key(rv.get("schemaname"), rv.get("relname"))


def names(items: list[dict]) -> list[str]:
    """The strings of a parse tree's name list."""
    return [i["String"]["sval"] for i in items if "String" in i]


def classify(kind: str, node: dict, a: Analysis, keys: SourceKeys) -> str:
    """session, session-dropped, pre, post, owner, skipped or unknown; notes sequences and views."""
    if kind == "VariableSetStmt":
        if node.get("kind") not in ("VAR_SET_VALUE", "VAR_SET_DEFAULT") or node.get("name") in (
            "role",
            "session_authorization",
        ):
            return "unknown"
        return "session-dropped" if node.get("name") in SESSION_DROPPED else "session"
    if kind == "SelectStmt":
        targets = node.get("targetList", [])
        call = targets[0].get("ResTarget", {}).get("val", {}).get("FuncCall") if targets else None
        fname = names(call.get("funcname", [])) if call else []
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
        return _classify_alter_table(node, a, keys)
    if kind == "CreateTableAsStmt":
        if node.get("objtype") != "OBJECT_MATVIEW":
            return "unknown"
        if node.get("into", {}).get("skipData"):
            a.matview = keys.rv_key(node.get("into", {}).get("rel"))
        return "post"
    if kind == "AlterDomainStmt":
        return "post" if node.get("subtype") in ("C", "V") else "unknown"
    if kind in PRE_KINDS:
        if kind == "CreateSchemaStmt":
            a.schema_created = keys.key(node.get("schemaname"), "")[0]
        elif kind == "CreateSeqStmt":
            key = keys.rv_key(node.get("sequence"))
            if key:
                a.sequences = [key]
        return "pre"
    if kind in POST_KINDS:
        if kind in ("IndexStmt", "CreateTrigStmt", "RuleStmt", "CreatePolicyStmt"):
            a.marks_post_data = True
        return "post"
    return "unknown"


def _classify_alter_table(node: dict, a: Analysis, keys: SourceKeys) -> str:
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
                    parts = names(d.get("arg", {}).get("List", {}).get("items", []))
                    if len(parts) == 2:
                        a.sequences = [*(a.sequences or []), keys.key(parts[0], parts[1])]
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
    a.relation = keys.rv_key(node.get("relation"))
    return "post" if "post" in classes else "pre"


def owner_only(kind: str, tree_json: str) -> bool:
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


def transaction_local(kind: str, text: str) -> str:
    """The transaction-local form of a session setting (SET LOCAL / set_config(..., true))."""
    toks = parser.scan(text)
    if kind == "VariableSetStmt":
        end = toks[0].end + 1
        return f"{text[:end]} LOCAL{text[end:]}"
    if len(toks) >= 2 and toks[-1].name == "ASCII_41" and toks[-2].name == "FALSE_P":
        t = toks[-2]
        return f"{text[: t.start]}true{text[t.end + 1 :]}"
    return text

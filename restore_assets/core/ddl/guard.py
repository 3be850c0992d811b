"""The guard: every statement may create or change objects only inside the restored schemas.

It is a whitelist over parse trees (pglast). The rule of each statement kind is in the statement
inventory (``INVENTORY`` in inventory.py: allow in schema, skip and list, or refuse; a kind not in
it is refused: fail closed); for the kinds it allows, the checks here find every object the parsed
statement creates or changes. References to other schemas are reads and pass (``REFERENCES
shared.countries``, a column of type ``shared.money``, ``EXECUTE FUNCTION shared.f()``); anything
else is refused with the statement's text in the message: ``DROP`` of anything, changes to another
schema's objects, objects created unqualified or elsewhere, ``CREATE EXTENSION`` (database-wide:
install extensions before the restore), ``DO`` blocks, roles, ``ALTER DEFAULT PRIVILEGES``
without ``IN SCHEMA``, settings that switch identity (``SET ROLE``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pglast import parser

from restore_assets.core.ddl.inventory import ALLOWED_SETTINGS, AT_ALLOWED, INVENTORY, REFUSE, SKIP
from restore_assets.core.ddl.names import ident_value
from restore_assets.core.errors import GuardViolation

_THREE_PART = frozenset(
    {"OBJECT_COLUMN", "OBJECT_TABCONSTRAINT", "OBJECT_TRIGGER", "OBJECT_POLICY", "OBJECT_RULE"}
)


def _names(items: Iterable[dict]) -> list[str]:
    return [i["String"]["sval"] for i in items if "String" in i]


class SchemaCheck:
    """Checks that named objects belong to the allowed schemas; each method returns why not."""

    def __init__(self, allowed: set[str]):
        self.allowed = allowed

    def schema(self, schema: str | None, what: str) -> str | None:
        """None when `schema` is one of the allowed schemas, else why not."""
        if not schema:
            return f"{what} is not schema-qualified"
        if schema not in self.allowed:
            return f"{what} is in schema {schema!r}, outside the restored schema(s)"
        return None

    def rangevar(self, rv: dict | None, what: str) -> str | None:
        """Check the schema of a RangeVar (bare or wrapped)."""
        if not rv:
            return f"{what} is missing"
        rv = rv.get("RangeVar", rv)
        name = rv.get("relname")
        return self.schema(rv.get("schemaname"), f"{what} {name!r}")

    def names(self, items: list[dict], what: str, parts: int = 2) -> str | None:
        """Check a qualified name list whose schema is `parts` from the end."""
        names = _names(items)
        if len(names) < parts:
            return self.schema(None, f"{what} {'.'.join(names)!r}")
        return self.schema(names[len(names) - parts], f"{what} {'.'.join(names)!r}")

    def obj(self, objtype: str, obj: dict) -> str | None:
        """Check the object of COMMENT/SECURITY LABEL/ALTER ... OWNER/GRANT by its type."""
        what = objtype.removeprefix("OBJECT_").lower().replace("_", " ")
        if "String" in obj:
            if objtype == "OBJECT_SCHEMA":
                return self.schema(obj["String"]["sval"], "schema")
            return f"{what} {obj['String']['sval']!r} is not an object of the restored schema"
        if "List" in obj:
            items = obj["List"].get("items", [])
            if items and "TypeName" in items[0]:
                return self.names(items[0]["TypeName"]["names"], what)
            return self.names(items, what, 3 if objtype in _THREE_PART else 2)
        if "ObjectWithArgs" in obj:
            return self.names(obj["ObjectWithArgs"].get("objname", []), what)
        if "TypeName" in obj:
            return self.names(obj["TypeName"].get("names", []), what)
        return f"{what}: unsupported object reference"


def _setval_target(call: dict) -> str | None:
    """The schema named by the first argument of setval('schema.seq', ...)."""
    args = call.get("args", [])
    if not args:
        return None
    arg = args[0]
    if "TypeCast" in arg:
        arg = arg["TypeCast"].get("arg", {})
    sval = arg.get("A_Const", {}).get("sval", {}).get("sval")
    if sval is None:
        return None
    toks = parser.scan(sval)
    if len(toks) >= 3 and toks[1].name == "ASCII_46":
        return ident_value(sval[toks[0].start : toks[0].end + 1])
    return None


def _select_violation(node: dict, check: SchemaCheck) -> str | None:
    keys = set(node) - {"targetList", "limitOption", "op"}
    targets = node.get("targetList", [])
    if keys or len(targets) != 1:
        return "only SELECT pg_catalog.set_config(...) and pg_catalog.setval(...) are allowed"
    call = targets[0].get("ResTarget", {}).get("val", {}).get("FuncCall")
    if call is None:
        return "only SELECT pg_catalog.set_config(...) and pg_catalog.setval(...) are allowed"
    fname = _names(call.get("funcname", []))
    if fname not in (
        ["pg_catalog", "set_config"],
        ["set_config"],
        ["pg_catalog", "setval"],
        ["setval"],
    ):
        return f"SELECT of function {'.'.join(fname)!r} is not allowed"
    if fname[-1] == "set_config":
        first = call.get("args", [{}])[0].get("A_Const", {}).get("sval", {}).get("sval")
        if first not in ALLOWED_SETTINGS:
            return f"setting {first!r} is not allowed"
        return None
    return check.schema(_setval_target(call), "sequence of setval()")


def node_violation(kind: str, node: dict, check: SchemaCheck) -> str | None:
    """Why one parsed statement (JSON parse tree node of type `kind`) is refused, or None."""
    rule = INVENTORY.get(kind)
    if rule is None:
        return (
            f"statement kind {kind} is not in the DDL engine's inventory of pg_dump statements"
            " (refused: the engine fails closed on what it does not know)"
        )
    if rule.action == REFUSE:
        return rule.why
    if rule.action == SKIP:
        return f"{kind} is skipped and listed, never applied: {rule.why}"
    if kind == "VariableSetStmt":
        name = node.get("name")
        if node.get("kind") not in ("VAR_SET_VALUE", "VAR_SET_DEFAULT", "VAR_RESET"):
            return f"SET form {node.get('kind')} is not allowed"
        if name not in ALLOWED_SETTINGS:
            return f"setting {name!r} is not allowed"
        return None
    if kind == "SelectStmt":
        return _select_violation(node, check)
    if kind == "CreateSchemaStmt":
        if node.get("schemaElts"):
            return "CREATE SCHEMA with embedded elements is not allowed"
        return check.schema(node.get("schemaname"), "schema")
    if kind == "CreateStmt":
        v = check.rangevar(node.get("relation"), "table")
        for parent in node.get("inhRelations", []):
            v = v or check.rangevar(parent, "parent table (PARTITION OF/INHERITS)")
        return v
    if kind == "CreateForeignTableStmt":
        return check.rangevar(node.get("base", {}).get("relation"), "foreign table")
    if kind in ("CreateSeqStmt", "AlterSeqStmt"):
        v = check.rangevar(node.get("sequence"), "sequence")
        for opt in node.get("options", []):
            d = opt.get("DefElem", {})
            if d.get("defname") == "owned_by":
                names = _names(d.get("arg", {}).get("List", {}).get("items", []))
                if names != ["none"]:
                    v = v or check.names(
                        d["arg"]["List"]["items"], "OWNED BY column", min(3, len(names))
                    )
        return v
    if kind == "CreateFunctionStmt":
        return check.names(node.get("funcname", []), "function")
    if kind == "DefineStmt":
        return check.names(node.get("defnames", []), node.get("kind", "object").lower())
    if kind in ("CreateEnumStmt", "CreateRangeStmt", "AlterEnumStmt"):
        return check.names(node.get("typeName", []), "type")
    if kind == "CompositeTypeStmt":
        return check.rangevar(node.get("typevar"), "type")
    if kind == "CreateDomainStmt":
        return check.names(node.get("domainname", []), "domain")
    if kind == "AlterDomainStmt":
        if node.get("subtype") not in ("C", "V"):
            return "ALTER DOMAIN other than ADD/VALIDATE CONSTRAINT is not in the inventory"
        return check.names(node.get("typeName", []), "domain")
    if kind == "IndexStmt":
        return check.rangevar(node.get("relation"), "table of the index")
    if kind == "CreateTrigStmt":
        return check.rangevar(node.get("relation"), "table of the trigger")
    if kind == "ViewStmt":
        return check.rangevar(node.get("view"), "view")
    if kind == "CreateTableAsStmt":
        if node.get("objtype") != "OBJECT_MATVIEW":
            return "CREATE TABLE AS writes data and is not allowed"
        return check.rangevar(node.get("into", {}).get("rel"), "materialized view")
    if kind == "RefreshMatViewStmt":
        return check.rangevar(node.get("relation"), "materialized view")
    if kind == "RuleStmt":
        return check.rangevar(node.get("relation"), "table of the rule")
    if kind in ("CreatePolicyStmt", "AlterPolicyStmt"):
        return check.rangevar(node.get("table"), "table of the policy")
    if kind in ("CommentStmt", "SecLabelStmt"):
        return check.obj(node.get("objtype", ""), node.get("object", {}))
    if kind == "AlterOwnerStmt":
        if node.get("relation"):
            return check.rangevar(node["relation"], "object")
        return check.obj(node.get("objectType", ""), node.get("object", {}))
    if kind == "AlterTableStmt":
        v = check.rangevar(node.get("relation"), "altered relation")
        for cmd in node.get("cmds", []):
            c = cmd.get("AlterTableCmd", {})
            if not v and c.get("subtype") not in AT_ALLOWED:
                return f"ALTER TABLE subcommand {c.get('subtype')} is not in the inventory"
            part = c.get("def", {}).get("PartitionCmd")
            if part is not None:
                v = v or check.rangevar(part.get("name"), "attached partition")
        return v
    if kind == "GrantStmt":
        return _grant_violation(node, check)
    if kind == "AlterDefaultPrivilegesStmt":
        for opt in node.get("options", []):
            d = opt.get("DefElem", {})
            if d.get("defname") == "schemas":
                for name in _names(d.get("arg", {}).get("List", {}).get("items", [])):
                    v = check.schema(name, "schema of ALTER DEFAULT PRIVILEGES")
                    if v:
                        return v
                return None
        return "ALTER DEFAULT PRIVILEGES without IN SCHEMA changes the whole database"
    if kind == "CreateStatsStmt":
        v = check.names(node.get("defnames", []), "statistics object")
        for rel in node.get("relations", []):
            v = v or check.rangevar(rel, "table of the statistics")
        return v
    if kind == "AlterStatsStmt":
        return check.names(node.get("defnames", []), "statistics object")
    if kind == "CreateOpClassStmt":
        return check.names(node.get("opclassname", []), "operator class") or (
            check.names(node["opfamilyname"], "operator family")
            if node.get("opfamilyname")
            else None
        )
    if kind in ("CreateOpFamilyStmt", "AlterOpFamilyStmt"):
        return check.names(node.get("opfamilyname", []), "operator family")
    if kind == "AlterTSConfigurationStmt":
        return check.names(node.get("cfgname", []), "text search configuration")
    if kind == "AlterTSDictionaryStmt":
        return check.names(node.get("dictname", []), "text search dictionary")
    if kind == "CreateConversionStmt":
        return check.names(node.get("conversion_name", []), "conversion")
    return f"statement kind {kind} has no check in the guard (refused)"


def _grant_violation(node: dict, check: SchemaCheck) -> str | None:
    objtype = node.get("objtype", "")
    targtype = node.get("targtype")
    objects = node.get("objects", [])
    if targtype == "ACL_TARGET_ALL_IN_SCHEMA":
        for o in objects:
            v = check.schema(o.get("String", {}).get("sval"), "schema of GRANT ... IN SCHEMA")
            if v:
                return v
        return None
    if targtype != "ACL_TARGET_OBJECT":
        return f"GRANT target {targtype} is not allowed"
    allowed_types = {
        "OBJECT_TABLE",
        "OBJECT_SEQUENCE",
        "OBJECT_FUNCTION",
        "OBJECT_PROCEDURE",
        "OBJECT_ROUTINE",
        "OBJECT_TYPE",
        "OBJECT_DOMAIN",
        "OBJECT_SCHEMA",
        "OBJECT_FOREIGN_TABLE",
    }
    if objtype not in allowed_types:
        return f"GRANT on {objtype.removeprefix('OBJECT_').lower()} is not allowed"
    for o in objects:
        if "RangeVar" in o:
            v = check.rangevar(o, "granted relation")
        else:
            v = check.obj(objtype, o)
        if v:
            return v
    return None


def statement_violation(statement: str, allowed_schemas: set[str]) -> str | None:
    """Why a statement text breaks the guard's rules, or None when it is allowed."""
    return text_violation(statement, SchemaCheck(set(allowed_schemas)))


def text_violation(statement: str, check: SchemaCheck) -> str | None:
    """Why a statement text (every statement it holds) is refused, or None."""
    try:
        tree = json.loads(parser.parse_sql_json(statement))
    except parser.ParseError as exc:
        return f"cannot be parsed ({exc})"
    stmts = tree.get("stmts", [])
    if not stmts:
        return None
    for raw in stmts:
        stmt = raw.get("stmt", {})
        kind, node = next(iter(stmt.items()))
        v = node_violation(kind, node, check)
        if v:
            return v
    return None


def violation_message(reason: str, statement: str, allowed: set[str], where: str = "") -> str:
    """The message of a GuardViolation: what is wrong, the statement, what is allowed."""
    text = " ".join(statement.split())
    if len(text) > 300:
        text = text[:300] + "..."
    return (
        f"refused statement{where}: {reason}. Statement: {text}. Allowed schemas:"
        f" {sorted(allowed)}; the dump must only create objects inside the restored schema(s)."
    )


def guard(statements: list[str], allowed_schemas: set[str]) -> None:
    """Raise GuardViolation naming the first statement that touches anything outside the schemas."""
    allowed = set(allowed_schemas)
    check = SchemaCheck(allowed)
    for number, statement in enumerate(statements, 1):
        reason = text_violation(statement, check)
        if reason:
            where = f" {number} of {len(statements)}"
            raise GuardViolation(violation_message(reason, statement, allowed, where))


__all__ = [
    "SchemaCheck",
    "guard",
    "node_violation",
    "statement_violation",
    "text_violation",
    "violation_message",
]

"""The statement inventory: what the DDL engine does with each statement kind of a pg_dump script.

``INVENTORY`` holds one rule per statement kind (pglast node type) pg_dump (13-17) writes for a
schema: *allow* (every object it creates or changes must be in `allowed_schemas`; the checks are
in guard.py), *skip* (it attaches a restored object to something outside the schema, such as
``ALTER PUBLICATION ... ADD TABLE``: the splitter lists it and never applies it; the guard refuses
it if asked to apply it) or *refuse*; a kind not in the inventory is refused (fail closed). Also
here: the settings a dump may set for its session (``ALLOWED_SETTINGS``) and the ALTER TABLE
subcommands pg_dump writes, by when they run (``AT_PRE`` before the data, ``AT_POST`` after it).
"""

from __future__ import annotations

from dataclasses import dataclass

# settings a dump may set for its own session; anything else (role, session_authorization...) is
# refused
ALLOWED_SETTINGS = frozenset(
    {
        "search_path",
        "check_function_bodies",
        "client_encoding",
        "standard_conforming_strings",
        "xmloption",
        "client_min_messages",
        "row_security",
        "default_tablespace",
        "default_table_access_method",
        "default_with_oids",
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "idle_session_timeout",
        "transaction_timeout",
        "escape_string_warning",
        "synchronous_commit",
        "maintenance_work_mem",
        "work_mem",
    }
)
ALLOW, SKIP, REFUSE = "allow in schema", "skip and list", "refuse"


@dataclass(frozen=True)
class Rule:
    """What the engine does with one statement kind (pglast node type) of a pg_dump script."""

    action: str  # ALLOW: every object it creates/alters must be in the restored schemas
    emitted_by: str  # the pg_dump functions (13-17) that write it, or who else does
    why: str = ""  # for SKIP and REFUSE: the reason given to the operator


def _refuse(emitted_by: str, why: str) -> Rule:
    return Rule(REFUSE, emitted_by, why)


_NOT_PG_DUMP = "not written by pg_dump -n"
# The statement inventory: every kind pg_dump (13-17) writes for the objects of one schema, and the
# kinds it never writes there that have a named refusal. A kind missing here fails closed.
INVENTORY: dict[str, Rule] = {
    # session settings between statements (checked against ALLOWED_SETTINGS)
    "VariableSetStmt": Rule(
        ALLOW, "_doSetFixedOutputState, _selectTablespace, _selectTableAccessMethod"
    ),
    "SelectStmt": Rule(ALLOW, "_doSetFixedOutputState (set_config); setval written by the engine"),
    # schema and relations
    "CreateSchemaStmt": Rule(ALLOW, "dumpNamespace"),
    "CreateStmt": Rule(ALLOW, "dumpTableSchema (tables, partitioned, partitions, typed, unlogged)"),
    "CreateForeignTableStmt": Rule(ALLOW, "dumpTableSchema (foreign tables)"),
    "ViewStmt": Rule(ALLOW, "dumpTableSchema (views), dumpRule (CREATE OR REPLACE VIEW)"),
    "CreateTableAsStmt": Rule(ALLOW, "dumpTableSchema (materialized views)"),
    "RefreshMatViewStmt": Rule(ALLOW, "dumpTableData of a materialized view; the engine"),
    "AlterTableStmt": Rule(
        ALLOW,
        "dumpTableSchema, dumpAttrDef, dumpConstraint, dumpIndex, dumpIndexAttach,"
        " dumpTableAttach, dumpSequence, dumpRule, dumpTrigger, dumpPolicy, ownership",
    ),
    "IndexStmt": Rule(ALLOW, "dumpIndex"),
    "CreateSeqStmt": Rule(ALLOW, "dumpSequence"),
    "AlterSeqStmt": Rule(ALLOW, "dumpSequence (OWNED BY)"),
    "CreateTrigStmt": Rule(ALLOW, "dumpTrigger (CREATE [CONSTRAINT] TRIGGER)"),
    "RuleStmt": Rule(ALLOW, "dumpRule"),
    "CreatePolicyStmt": Rule(ALLOW, "dumpPolicy"),
    "AlterPolicyStmt": Rule(ALLOW, _NOT_PG_DUMP + "; a policy of the schema"),
    "CreateStatsStmt": Rule(ALLOW, "dumpStatisticsExt"),
    "AlterStatsStmt": Rule(ALLOW, "dumpStatisticsExt (SET STATISTICS)"),
    # types and routines
    "CreateFunctionStmt": Rule(ALLOW, "dumpFunc (functions, procedures)"),
    "DefineStmt": Rule(
        ALLOW,
        "dumpAgg, dumpOpr, dumpBaseType, dumpShellType, dumpCollation, dumpTSParser,"
        " dumpTSDictionary, dumpTSTemplate, dumpTSConfig",
    ),
    "CreateEnumStmt": Rule(ALLOW, "dumpEnumType"),
    "AlterEnumStmt": Rule(ALLOW, "dumpEnumType (binary upgrade only)"),
    "CreateRangeStmt": Rule(ALLOW, "dumpRangeType"),
    "CompositeTypeStmt": Rule(ALLOW, "dumpCompositeType"),
    "CreateDomainStmt": Rule(ALLOW, "dumpDomain"),
    "AlterDomainStmt": Rule(ALLOW, "dumpDomain, dumpConstraint (ADD CONSTRAINT ... NOT VALID)"),
    "CreateOpClassStmt": Rule(ALLOW, "dumpOpclass"),
    "CreateOpFamilyStmt": Rule(ALLOW, "dumpOpfamily"),
    "AlterOpFamilyStmt": Rule(ALLOW, "dumpOpfamily (ADD OPERATOR/FUNCTION)"),
    "CreateConversionStmt": Rule(ALLOW, "dumpConversion"),
    "AlterTSConfigurationStmt": Rule(ALLOW, "dumpTSConfig (ADD MAPPING)"),
    "AlterTSDictionaryStmt": Rule(ALLOW, _NOT_PG_DUMP + "; a dictionary of the schema"),
    # comments, labels, privileges, ownership
    "CommentStmt": Rule(ALLOW, "dumpComment, dumpTableComment"),
    "SecLabelStmt": Rule(ALLOW, "dumpSecLabel, dumpTableSecLabel"),
    "GrantStmt": Rule(ALLOW, "dumpACL (objects, columns, schema)"),
    "AlterDefaultPrivilegesStmt": Rule(ALLOW, "dumpDefaultACL (IN SCHEMA only)"),
    "AlterOwnerStmt": Rule(ALLOW, "_printTocEntry (ALTER ... OWNER TO; applied when asked)"),
    # attach a restored object to something outside the schema: skipped and listed
    "AlterPublicationStmt": Rule(
        SKIP,
        "dumpPublicationTable, dumpPublicationNamespace",
        "it would add the restored copy to a live publication",
    ),
    "AlterObjectDependsStmt": Rule(
        SKIP,
        "append_depends_on_extension (dumpFunc, dumpIndex, dumpTrigger, matviews)",
        "it would make the restored object depend on an extension (dropped with it)",
    ),
    "AlterExtensionContentsStmt": Rule(
        SKIP,
        "binary_upgrade_extension_member",
        "it would make the restored object a member of a database-wide extension",
    ),
    # refused
    "DropStmt": _refuse("dumpXxx with --clean", "DROP is never part of a restore"),
    "TruncateStmt": _refuse(_NOT_PG_DUMP, "TRUNCATE is never part of a restore"),
    "DeleteStmt": _refuse(_NOT_PG_DUMP, "DML is never part of a restore's DDL"),
    "UpdateStmt": _refuse(_NOT_PG_DUMP, "DML is never part of a restore's DDL"),
    "InsertStmt": _refuse("dumpTableData --inserts", "DML is never part of a restore's DDL"),
    "MergeStmt": _refuse(_NOT_PG_DUMP, "DML is never part of a restore's DDL"),
    "CopyStmt": _refuse("dumpTableData", "COPY is the data mover's job, not DDL"),
    "DoStmt": _refuse(_NOT_PG_DUMP, "anonymous DO blocks can do anything and are not allowed"),
    "CallStmt": _refuse(_NOT_PG_DUMP, "CALL runs code and is not allowed"),
    "ExecuteStmt": _refuse(_NOT_PG_DUMP, "EXECUTE runs code and is not allowed"),
    "TransactionStmt": _refuse(
        "--single-transaction (pg_restore)",
        "transaction control is done by apply(), not by the statements",
    ),
    "CreateExtensionStmt": _refuse(
        "dumpExtension",
        "CREATE EXTENSION changes the whole database: install extensions before the restore",
    ),
    "AlterExtensionStmt": _refuse(_NOT_PG_DUMP, "extensions are database-wide"),
    "CreateRoleStmt": _refuse("pg_dumpall", "roles are cluster-wide"),
    "AlterRoleStmt": _refuse("pg_dumpall", "roles are cluster-wide"),
    "AlterRoleSetStmt": _refuse("pg_dumpall", "roles are cluster-wide"),
    "DropRoleStmt": _refuse("pg_dumpall --clean", "roles are cluster-wide"),
    "GrantRoleStmt": _refuse("pg_dumpall", "role membership is cluster-wide"),
    "CreatedbStmt": _refuse("--create", "databases are out of scope"),
    "AlterDatabaseStmt": _refuse("--create", "databases are out of scope"),
    "AlterDatabaseSetStmt": _refuse("--create", "databases are out of scope"),
    "CreateEventTrigStmt": _refuse("dumpEventTrigger", "event triggers are database-wide"),
    "AlterEventTrigStmt": _refuse("dumpEventTrigger", "event triggers are database-wide"),
    "CreateCastStmt": _refuse("dumpCast", "casts are database-wide"),
    "CreateTransformStmt": _refuse("dumpTransform", "transforms are database-wide"),
    "CreatePLangStmt": _refuse("dumpProcLang", "languages are database-wide"),
    "CreateAmStmt": _refuse("dumpAccessMethod", "access methods are database-wide"),
    "CreateFdwStmt": _refuse("dumpForeignDataWrapper", "foreign-data wrappers are database-wide"),
    "CreateForeignServerStmt": _refuse("dumpForeignServer", "foreign servers are database-wide"),
    "CreateUserMappingStmt": _refuse("dumpUserMappings", "user mappings are database-wide"),
    "CreatePublicationStmt": _refuse("dumpPublication", "publications are database-wide"),
    "CreateSubscriptionStmt": _refuse("dumpSubscription", "subscriptions are database-wide"),
    "CreateTableSpaceStmt": _refuse("pg_dumpall", "tablespaces are cluster-wide"),
    "AlterSystemStmt": _refuse(_NOT_PG_DUMP, "ALTER SYSTEM changes the server"),
    "VacuumStmt": _refuse(
        _NOT_PG_DUMP, "VACUUM/ANALYZE is not DDL (and VACUUM cannot run in a transaction)"
    ),
    "LockStmt": _refuse(_NOT_PG_DUMP, "explicit locks are not allowed"),
    "ReindexStmt": _refuse(_NOT_PG_DUMP, "REINDEX is not allowed"),
    "ClusterStmt": _refuse(_NOT_PG_DUMP, "CLUSTER is not allowed"),
    "LoadStmt": _refuse(_NOT_PG_DUMP, "LOAD is not allowed"),
    "DiscardStmt": _refuse(_NOT_PG_DUMP, "DISCARD is not allowed"),
    "ListenStmt": _refuse(_NOT_PG_DUMP, "not DDL"),
    "NotifyStmt": _refuse(_NOT_PG_DUMP, "not DDL"),
    "RenameStmt": _refuse(_NOT_PG_DUMP, "renames are not part of a restore"),
    "AlterObjectSchemaStmt": _refuse(_NOT_PG_DUMP, "moving objects between schemas is not allowed"),
}
SKIPPED_KINDS = frozenset(k for k, r in INVENTORY.items() if r.action == SKIP)
# ALTER TABLE subcommands that shape the table itself (pre) ...
AT_PRE = frozenset(
    {
        "AT_ColumnDefault",
        "AT_AddIdentity",
        "AT_SetIdentity",
        "AT_SetStatistics",
        "AT_SetStorage",
        "AT_SetCompression",
        "AT_SetOptions",
        "AT_ResetOptions",
        "AT_SetRelOptions",
        "AT_ResetRelOptions",
        "AT_AddInherit",
        "AT_AddOf",
        "AT_SetNotNull",
        "AT_GenericOptions",
        "AT_AlterColumnGenericOptions",
        "AT_SetAccessMethod",
        "AT_SetLogged",
        "AT_SetUnLogged",
        "AT_AttachPartition",
    }
)
# ... and those that need the data or the indexes (post)
AT_POST = frozenset(
    {
        "AT_EnableRowSecurity",
        "AT_DisableRowSecurity",
        "AT_ForceRowSecurity",
        "AT_NoForceRowSecurity",
        "AT_ClusterOn",
        "AT_ReplicaIdentity",
        "AT_EnableTrig",
        "AT_EnableAlwaysTrig",
        "AT_EnableReplicaTrig",
        "AT_DisableTrig",
        "AT_EnableTrigAll",
        "AT_DisableTrigAll",
        "AT_EnableTrigUser",
        "AT_DisableTrigUser",
        "AT_EnableRule",
        "AT_EnableAlwaysRule",
        "AT_EnableReplicaRule",
        "AT_DisableRule",
        "AT_ValidateConstraint",
        "AT_AlterConstraint",
    }
)
# ALTER TABLE subcommands pg_dump writes (dumpTableSchema & co.); any other is refused
AT_ALLOWED = (
    AT_PRE | AT_POST | frozenset({"AT_AddConstraint", "AT_ChangeOwner", "AT_SetTableSpace"})
)


def inventory_table() -> str:
    """The statement inventory as a Markdown table (kind, rule, pg_dump functions)."""
    rows = ["| statement kind (pglast node) | rule | written by |", "| --- | --- | --- |"]
    for kind, rule in INVENTORY.items():
        rows.append(f"| `{kind}` | {rule.action} | {rule.emitted_by} |")
    return "\n".join(rows)


__all__ = [
    "ALLOW",
    "ALLOWED_SETTINGS",
    "AT_ALLOWED",
    "AT_POST",
    "AT_PRE",
    "INVENTORY",
    "REFUSE",
    "SKIP",
    "SKIPPED_KINDS",
    "Rule",
    "inventory_table",
]

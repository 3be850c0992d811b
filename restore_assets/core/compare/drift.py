"""Schema drift between the restored and the live schema (structure only, no rows)."""

from __future__ import annotations

from restore_assets.core.compare.catalog import SchemaCatalog
from restore_assets.core.compare.model import ObjectDrift, SchemaDrift


def _objects(restored: dict[tuple[str, str], str], live: dict[tuple[str, str], str]) -> ObjectDrift:
    out = ObjectDrift()
    for key in sorted(restored.keys() | live.keys()):
        table, name = key
        r, lv = restored.get(key), live.get(key)
        if lv is None:
            out.only_in_restored.append({"table": table, "name": name, "definition": r})
        elif r is None:
            out.only_in_live.append({"table": table, "name": name, "definition": lv})
        elif r != lv:
            out.changed.append({"table": table, "name": name, "restored": r, "live": lv})
    return out


def _rls_state(rls: bool, force: bool) -> str:
    return "forced" if rls and force else "enabled" if rls else "disabled"


def schema_drift(restored: SchemaCatalog, live: SchemaCatalog) -> SchemaDrift:
    """Tables, columns, constraints, indexes, policies, triggers and RLS present on one side only."""
    drift = SchemaDrift(
        tables_only_in_restored=sorted(restored.tables.keys() - live.tables.keys()),
        tables_only_in_live=sorted(live.tables.keys() - restored.tables.keys()),
        constraints=_objects(restored.constraints, live.constraints),
        indexes=_objects(restored.indexes, live.indexes),
        policies=_objects(restored.policies, live.policies),
        triggers=_objects(restored.triggers, live.triggers),
    )
    for name in sorted(restored.tables.keys() & live.tables.keys()):
        rt, lt = restored.tables[name], live.tables[name]
        lcols = {c.name: c for c in lt.columns}
        rcols = {c.name: c for c in rt.columns}
        for c in rt.columns:
            other = lcols.get(c.name)
            if other is None:
                drift.columns.only_in_restored.append(
                    {"table": name, "column": c.name, "type": c.type}
                )
            elif other.type != c.type or other.generated != c.generated:
                drift.columns.changed.append(
                    {
                        "table": name,
                        "column": c.name,
                        "restored": c.type + (" (generated)" if c.generated else ""),
                        "live": other.type + (" (generated)" if other.generated else ""),
                    }
                )
        for c in lt.columns:
            if c.name not in rcols:
                drift.columns.only_in_live.append({"table": name, "column": c.name, "type": c.type})
        r_rls, l_rls = _rls_state(rt.rls, rt.force_rls), _rls_state(lt.rls, lt.force_rls)
        if r_rls != l_rls:
            drift.row_security.changed.append({"table": name, "restored": r_rls, "live": l_rls})
    return drift

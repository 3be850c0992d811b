"""Row recovery, the conflict policy: skip, overwrite or refuse the planned rows that collide with
live ones, and leave out with a row every planned row that depends on it."""

from __future__ import annotations

from restore_assets.core.recover.model import Key, SchemaPlan


def resolve_conflicts(plan: SchemaPlan, policy: str) -> str | None:
    """Apply the conflict policy to the plan (skip, overwrite or fail); return a refusal or None."""
    problems = []
    skip: dict[str, dict[Key, str]] = {}
    for t in plan.tables.values():
        for c in t.conflicts:
            desc = (
                f"{plan.live_schema}.{t.table} {dict(zip(t.key, c['key'], strict=True))} collides"
                f" on {c['constraint']} with live row"
                f" {dict(zip(t.key, c['live_key'], strict=True))}"
            )
            same_row = c["kind"] == "primary key"
            if policy == "fail":
                problems.append(desc)
            elif policy == "overwrite" and not same_row:
                problems.append(
                    desc + " (overwrite only replaces the live row with the same primary key)"
                )
            elif policy == "overwrite":
                k = tuple(c["key"])
                if list(k) in t.inserts:
                    t.inserts.remove(list(k))
                    t.overwrites.append(list(k))
            else:
                skip.setdefault(t.table, {})[tuple(c["key"])] = f"conflict on {c['constraint']}"
    if problems:
        hint = (
            "choose --on-conflict skip (leave these rows out) or overwrite (replace the live row"
            " with the same key), or change the live rows first"
        )
        return f"{len(problems)} conflict(s): " + "; ".join(problems[:10]) + f". {hint}"
    skip_rows(plan, skip)
    return None


def skip_rows(plan: SchemaPlan, skip: dict[str, dict[Key, str]]) -> None:
    """Leave rows out of the plan, and every planned row that depends on them through a key."""
    pending = [(t, k, why) for t, ks in skip.items() for k, why in ks.items()]
    done: set[tuple[str, Key]] = set()
    while pending:
        table, key, why = pending.pop()
        if (table, key) in done:
            continue
        done.add((table, key))
        tp = plan.tables[table]
        lk = list(key)
        if lk in tp.inserts:
            tp.inserts.remove(lk)
        elif lk in tp.overwrites:
            tp.overwrites.remove(lk)
        elif lk in tp.updates:
            i = tp.updates.index(lk)
            del tp.updates[i], tp.update_hashes[i]
        else:
            continue
        tp.skipped.append({"key": lk, "reason": why})
        for child in plan.tables.values():
            for ck, ptable, pk in child.depends:
                if ptable == table and tuple(pk) == key:
                    pending.append(
                        (
                            child.table,
                            tuple(ck),
                            f"depends on {table} {dict(zip(tp.key, lk, strict=True))} ({why})",
                        )
                    )

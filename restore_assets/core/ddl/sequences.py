"""``setval`` generation: the restored sequences continue from the values read at the restore point."""

from __future__ import annotations

from restore_assets.core.ddl.names import qualified, sql_literal

SequenceValues = dict[
    tuple[str, str], tuple[int, bool]
]  # (schema, name) -> (last_value, is_called)


def setval_statements(
    sequences: list[tuple[str, str]],
    values: SequenceValues | None,
    renames: dict[str, str],
) -> tuple[list[str], list[str]]:
    """The setval calls for the dump's sequences (source schema, name), and warnings for the rest."""
    warnings: list[str] = []
    if values is None:
        if sequences:
            warnings.append(
                "no sequence values given: sequences of the restored schema start afresh"
            )
        return [], warnings
    out = []
    known = set(sequences)
    for schema, seq in sequences:
        if schema not in renames:
            continue
        if (schema, seq) not in values:
            warnings.append(f"no value read for sequence {schema}.{seq}; not set")
            continue
        last_value, is_called = values[(schema, seq)]
        target = sql_literal(qualified(renames[schema], seq))
        called = "true" if is_called else "false"
        out.append(f"SELECT pg_catalog.setval({target}, {int(last_value)}, {called})")
    for schema, seq in values:
        if schema in renames and (schema, seq) not in known:
            warnings.append(f"sequence {schema}.{seq} has a value but is not in the dump; not set")
    return out, warnings

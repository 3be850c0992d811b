"""The comparison engine: a restored schema against its live schema, and copy-back of rows."""

from restore_assets.core.compare.copyback import CopyBackPlan, apply_copy_back, copy_back_sql
from restore_assets.core.compare.engine import compare_schemas
from restore_assets.core.compare.model import (
    CompareError,
    ComparisonResult,
    CopyBackRefused,
    ObjectDrift,
    SchemaDrift,
    SequenceCheck,
    SequenceState,
    TableComparison,
)

__all__ = [
    "CompareError",
    "ComparisonResult",
    "CopyBackPlan",
    "CopyBackRefused",
    "ObjectDrift",
    "SchemaDrift",
    "SequenceCheck",
    "SequenceState",
    "TableComparison",
    "apply_copy_back",
    "compare_schemas",
    "copy_back_sql",
]

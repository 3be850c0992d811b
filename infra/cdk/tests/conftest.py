"""pytest setup of the CDK tests: import paths, and the module-scoped synthesis fixture."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
for path in (TESTS_DIR, TESTS_DIR.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import cdk_helpers  # noqa: E402


@pytest.fixture(scope="module")
def template_of() -> Callable[[str], Any]:
    """variant name -> synthesized Template; each variant is synthesized once per session."""
    return cdk_helpers.synth

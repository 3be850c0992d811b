"""The demo tenant SQL the loader Lambda runs: the local demo's own template, staged as a Lambda asset.

The template is `restore_assets/demo/tenant_schema.sql` (the same schema `restore-assets demo seed`
creates locally). Its markers are turned into the loader's one placeholder: `{{SCHEMA}}` (a quoted
identifier) becomes `"{{SCHEMA_NAME}}"`, `{{schema}}` and `{{schema_literal}}` (the name as written)
become `{{SCHEMA_NAME}}`; the loader accepts only plain lowercase names, for which both forms agree.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from .config import CDK_DIR, REPO_ROOT

TEMPLATE = REPO_ROOT / "restore_assets" / "demo" / "tenant_schema.sql"
LOADER_DIR = CDK_DIR / "assets" / "demo_loader"
STAGED_DIR = CDK_DIR / "build" / "demo-loader-asset"
HEADER = "-- Demo tenant schema for the loader Lambda, generated from restore_assets/demo/tenant_schema.sql\n\n"


def demo_tenant_sql() -> str:
    """The demo tenant DDL with the loader's `{{SCHEMA_NAME}}` placeholder."""
    text = TEMPLATE.read_text()
    text = text.replace("{{SCHEMA}}", '"{{SCHEMA_NAME}}"').replace(
        "{{schema_literal}}", "{{SCHEMA_NAME}}"
    )
    return HEADER + text.replace("{{schema}}", "{{SCHEMA_NAME}}")


def stage_loader_asset() -> tuple[Path, str]:
    """Write the Lambda asset (demo_loader/ + demo_tenant.sql) under build/; return it and the SQL's sha256."""
    sql = demo_tenant_sql()
    if STAGED_DIR.exists():
        shutil.rmtree(STAGED_DIR)
    shutil.copytree(
        LOADER_DIR,
        STAGED_DIR / "demo_loader",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "requirements.txt"),
    )
    (STAGED_DIR / "demo_tenant.sql").write_text(sql)
    return STAGED_DIR, hashlib.sha256(sql.encode()).hexdigest()

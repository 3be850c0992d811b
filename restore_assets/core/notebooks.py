"""Run the papermill notebooks and export them to HTML (code cells hidden)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from restore_assets.core.errors import RestoreError

# the .ipynb files ship inside the package (package data), so a wheel install finds them
NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebook_files"  # restore_assets/
KERNEL = "python3"
OFFLINE_TEMPLATE = (
    "{%- extends 'lab/index.html.j2' -%}\n"
    "{% block html_head_js_requirejs %}{% endblock %}\n"
    "{% block html_head_js_mathjax %}{% endblock %}\n"
)


def notebook_path(name: str) -> Path:
    """Path of a bundled notebook by file name."""
    path = NOTEBOOK_DIR / name
    if not path.exists():
        raise RestoreError(f"notebook {name} not found in {NOTEBOOK_DIR}")
    return path


def execute(name: str, output: Path, parameters: dict[str, Any], timeout: int = 1800) -> Path:
    """Execute a notebook with papermill; a failing cell raises RestoreError naming the notebook."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(notebook_path(name)),
            str(output),
            parameters=parameters,
            kernel_name=KERNEL,
            progress_bar=False,
            execution_timeout=timeout,
            cwd=str(output.parent),
        )
    except PapermillExecutionError as exc:
        raise RestoreError(
            f"notebook {name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        ) from None
    return output


def to_html(notebook: Path, output: Path | None = None, hide_code: bool = True) -> Path:
    """Export an executed notebook to a standalone HTML file (code cells hidden by default)."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    # the lab template without its two CDN scripts (require.js, MathJax): one file, works offline
    offline = jinja2.DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})
    exporter = HTMLExporter(extra_loaders=[offline], template_file="offline.html.j2")
    exporter.exclude_input = hide_code
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nbformat.read(str(notebook), as_version=4))
    output = output or notebook.with_suffix(".html")
    output.write_text(body)
    return output


def render_comparison_report(
    out_dir: Path,
    comparison: dict[str, Any],
    audit_record: dict[str, Any] | None = None,
    name: str | None = None,
) -> Path:
    """Execute comparison_report.ipynb for one comparison and export it to HTML; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or f"comparison-{comparison.get('schema', 'schema')}"
    with tempfile.TemporaryDirectory() as tmp:
        cmp_path = Path(tmp) / "comparison.json"
        cmp_path.write_text(json.dumps(comparison, default=str))
        audit_path = Path(tmp) / "audit.json"
        audit_path.write_text(json.dumps(audit_record or {}, default=str))
        executed = execute(
            "comparison_report.ipynb",
            out_dir / f"{stem}.ipynb",
            {"comparison_json": str(cmp_path), "audit_json": str(audit_path)},
        )
    return to_html(executed, out_dir / f"{stem}.html")

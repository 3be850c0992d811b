"""Write the packaged notebooks comparison_report.ipynb and schema_restore_runbook.ipynb
(restore_assets/notebook_files/, shipped as package data) from their cell sources."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOKS = Path(__file__).resolve().parent.parent / "restore_assets" / "notebook_files"
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def parameters_cell(source: str) -> nbformat.NotebookNode:
    """A code cell tagged `parameters` for papermill."""
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def save(name: str, cells: list) -> None:
    """Write one notebook with kernelspec metadata."""
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, str(NOTEBOOKS / name))


COMPARISON = [
    new_markdown_cell("# Post-restore comparison report"),
    parameters_cell(
        'comparison_json = ""  # path of the comparison engine\'s JSON\naudit_json = ""  # path of the restore\'s audit record (JSON), optional'
    ),
    new_code_cell(
        "import json\n"
        "from pathlib import Path\n"
        "%matplotlib inline\n"
        "import matplotlib.pyplot as plt\n"
        "from IPython.display import HTML, Markdown, display\n"
        "from restore_assets import report\n"
        "comparison = json.loads(Path(comparison_json).read_text())\n"
        "audit = json.loads(Path(audit_json).read_text()) if audit_json and Path(audit_json).exists() else {}\n"
        "display(HTML('<style>.ra-table td, .ra-table th {padding: 2px 10px; text-align: right} .ra-table td:first-child {text-align: left}</style>'))"
    ),
    new_markdown_cell("## Summary"),
    new_code_cell(
        "rows = report.summary_rows(comparison)\n"
        "if audit:\n"
        "    rows = [('restore id', audit.get('restore_id')), ('restore point', audit.get('restore_point')),\n"
        "            ('restore started', audit.get('created_at')), ('status when the report ran', audit.get('status'))] + rows\n"
        "display(HTML(report.html_table(['', 'value'], rows, 'ra-table ra-summary')))"
    ),
    new_markdown_cell("## Per table"),
    new_code_cell(
        "display(HTML(report.html_table(report.PER_TABLE_HEADERS, report.per_table_rows(comparison))))"
    ),
    new_code_cell(
        "tables = comparison.get('tables', {})\n"
        "fig, ax = plt.subplots(figsize=(9, 0.5 + 0.6 * max(len(tables), 1)))\n"
        "report.difference_chart(comparison, ax)\n"
        "fig.tight_layout()\n"
        "display(fig)\n"
        "plt.close(fig)"
    ),
    new_code_cell(
        "samples = [(name, kind, '; '.join(json.dumps(k) for k in keys)) for name, t in sorted(tables.items())\n"
        "           for kind, keys in sorted((t.get('samples') or {}).items()) if keys]\n"
        "display(Markdown('### Sample keys'))\n"
        "display(HTML(report.html_table(['table', 'kind', 'keys'], samples) if samples else '<p>no differing rows</p>'))"
    ),
    new_markdown_cell("## Restore timeline"),
    new_code_cell(
        "phases = audit.get('phases') or []\n"
        "fig, ax = plt.subplots(figsize=(9, 0.5 + 0.4 * max(len(phases), 1)))\n"
        "report.phase_timeline(phases, ax)\n"
        "fig.tight_layout()\n"
        "display(fig)\n"
        "plt.close(fig)"
    ),
    new_markdown_cell("## Schema drift"),
    new_code_cell(
        "drift = report.drift_rows(comparison)\n"
        "display(HTML(report.html_table(['kind', 'side', 'objects'], drift) if drift else '<p>no schema drift</p>'))"
    ),
    new_markdown_cell("## Sequences"),
    new_code_cell(
        "display(HTML(report.html_table(report.SEQUENCE_HEADERS, report.sequence_rows(comparison))))"
    ),
]


RUNBOOK = [
    new_markdown_cell(
        "# Schema restore runbook\n"
        "Restores one or more tenant schemas to a point in time (or a snapshot) side by side with the live ones,\n"
        "then shows what differs. Set the parameters, run all cells, read each section before the next."
    ),
    parameters_cell(
        'root = ".restore-assets"  # local fleet root (backend local)\n'
        'backend = "local"  # or "aws"\n'
        'config_file = ""  # backend YAML for aws\n'
        'database = "tenant_a"\n'
        'schemas = ["customer_a1"]\n'
        'restore_time = ""  # ISO 8601 with zone, or leave empty and set snapshot_id\n'
        'snapshot_id = ""\n'
        "tables = []  # table-level restore (optional)\n"
        'suffix = ""  # default: the restore point as YYYYMMDDHHMMSS\n'
        "dry_run = False  # True: pre-flight and plan only, create nothing"
    ),
    new_code_cell(
        "import json, shutil\n"
        "from pathlib import Path\n"
        "import yaml\n"
        "from IPython.display import HTML, Markdown, display\n"
        "from restore_assets import report\n"
        "from restore_assets.backends import build_services\n"
        "from restore_assets.runner import plan_schema_restore, run_schema_restore\n"
        "config = yaml.safe_load(Path(config_file).read_text()) if config_file else {}\n"
        "config.update({'backend': backend, 'root': str(Path(root).resolve())})\n"
        "request = {'database': database, 'schemas': list(schemas)}\n"
        "if restore_time: request['restore_time'] = restore_time\n"
        "if snapshot_id: request['snapshot_id'] = snapshot_id\n"
        "if tables: request['tables'] = list(tables)\n"
        "if suffix: request['suffix'] = suffix\n"
        "services = build_services(config)"
    ),
    new_markdown_cell("## 1. Pre-flight"),
    new_code_cell(
        "source = services.fleet.describe()\n"
        "rows = [('source', source.identifier), ('topology', source.topology), ('engine', source.engine_version),\n"
        "        ('restore window', f\"{source.window.earliest} .. {source.window.latest}\"),\n"
        "        ('snapshots', len(source.snapshots))]\n"
        "if source.snapshots and backend == 'local':\n"
        "    need = max(s.size_bytes for s in source.snapshots)\n"
        "    free = shutil.disk_usage(services.fleet.root).free\n"
        "    rows += [('temporary instance needs (largest snapshot)', f'{need / 1e6:,.0f} MB'), ('free disk', f'{free / 1e6:,.0f} MB')]\n"
        "    assert free > 2 * need, 'not enough free disk for the temporary instance'\n"
        "display(HTML(report.html_table(['check', 'value'], rows)))"
    ),
    new_markdown_cell("## 2. Plan (dry run: validates the request, creates nothing)"),
    new_code_cell(
        "plan = plan_schema_restore(request, config)\n"
        "p = plan['plan']\n"
        "display(HTML(report.html_table(['schema', 'restored as'], sorted(p['targets'].items()))))\n"
        "display(Markdown(f\"Restore point: **{p['restore_point']}**. Tables: {p['tables'] or 'all'}. \"\n"
        "                 f\"Foreign keys left out: {p['left_out_foreign_keys'] or 'none'}\"))\n"
        "if plan.get('would_create'):\n"
        "    display(HTML(report.html_table(['resource', 'details'], [(r.get('kind'), r) for r in plan['would_create']])))"
    ),
    new_markdown_cell(
        "## 3. Restore (runs the Dagster `schema_restore` job; phase progress is logged below)"
    ),
    new_code_cell(
        "if dry_run:\n"
        "    outcome = None\n"
        "    display(Markdown('**dry run**: nothing was created'))\n"
        "else:\n"
        "    outcome = run_schema_restore(request, config)\n"
        "    display(HTML(report.html_table(['phase', 'outcome', 'seconds', 'error'],\n"
        "        [(k, v['outcome'], v['seconds'], v['error']) for k, v in outcome['phases'].items()])))\n"
        "    if outcome['status'] != 'succeeded':\n"
        "        raise RuntimeError(f\"restore {outcome['restore_id']} {outcome['status']}: {outcome['cause']}\")"
    ),
    new_markdown_cell("## 4. Result and report"),
    new_code_cell(
        "if outcome:\n"
        "    display(HTML(report.html_table(['', 'value'], [('restore id', outcome['restore_id']), ('status', outcome['status']),\n"
        "        ('restore point', outcome['restore_point']), ('restored', outcome['restored']), ('duration (s)', outcome['duration_s'])])))\n"
        "    for schema, rep in ((outcome.get('report') or {}).get('reports') or {}).items():\n"
        "        display(Markdown(f\"**{schema}**: {rep['headline']} — report: `{rep.get('html') or rep['json']}`\"))"
    ),
    new_markdown_cell("## 5. Next steps"),
    new_code_cell(
        "if outcome:\n"
        "    steps = []\n"
        "    for schema, restored in outcome['restored'].items():\n"
        "        steps += [\n"
        "            f'inspect:    psql -d {database} -c \"\\\\dt {restored}.*\"',\n"
        "            f'compare:    restore-assets compare --root {root} --database {database} --schema {schema} --restored {restored}',\n"
        "            f'copy back:  restore-assets copy-back --root {root} --database {database} --schema {schema} --restored {restored} --table TABLE --all-only-in-restored [--apply]',\n"
        "            f'drop:       psql -d {database} -c \"DROP SCHEMA {restored} CASCADE\"',\n"
        "        ]\n"
        "    display(Markdown('```\\n' + '\\n'.join(steps) + '\\n```'))"
    ),
]


if __name__ == "__main__":
    save("comparison_report.ipynb", COMPARISON)
    save("schema_restore_runbook.ipynb", RUNBOOK)
    print(
        "wrote", NOTEBOOKS / "comparison_report.ipynb", NOTEBOOKS / "schema_restore_runbook.ipynb"
    )

"""Write the packaged notebooks (comparison report; schema restore, recovery and server restore
runbooks) into restore_assets/notebook_files/, shipped as package data, from their cell sources."""

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
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: regenerating changes only what changed
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
        "from restore_assets.core import report\n"
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
    new_markdown_cell("## Rows (the first sample keys of each kind; long values cut)"),
    new_code_cell(
        "from restore_assets.core.compare.details import DETAILS_STYLE, details_html\n"
        "pages = [details_html(name, t) for name, t in sorted(tables.items()) if t.get('details')]\n"
        "display(HTML(DETAILS_STYLE + ''.join(pages) if pages else '<p>no rows to show</p>'))"
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
        "from restore_assets.core import report\n"
        "from restore_assets.backends.factory import build_services\n"
        "from restore_assets.jobs.launch import plan_schema_restore, run_schema_restore\n"
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
        "    if outcome.get('cause'):  # a failed report is a warning: the restored schemas are complete\n"
        "        display(Markdown(f\"**{outcome['cause']}**\"))\n"
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
        "        ]\n"
        "    rid = outcome['restore_id']\n"
        "    steps += [\n"
        "        f'report:     restore-assets report --root {root} --restore-id {rid}',\n"
        "        f'drop:       restore-assets drop-restored --root {root} --restore-id {rid} --yes-drop-restored',\n"
        "    ]\n"
        "    display(Markdown('```\\n' + '\\n'.join(steps) + '\\n```'))"
    ),
]


RECOVERY = [
    new_markdown_cell(
        "# Recovery runbook: from report to repair\n"
        "Brings rows deleted or changed since a restore's point in time back into the live schema:\n"
        "choose, see the plan with sample rows, apply (one transaction, reversible), then compare again\n"
        "to show what remains different. Nothing is written unless `apply` is True."
    ),
    parameters_cell(
        'root = ".restore-assets"  # local fleet root (backend local)\n'
        'backend = "local"  # or "aws"\n'
        'config_file = ""  # backend YAML for aws\n'
        'restore_id = ""  # the schema restore to recover rows from\n'
        "tables = []  # only these tables (default: all)\n"
        "deleted = True  # re-insert rows deleted since the restore point\n"
        "changed = False  # set rows changed since back to their values then\n"
        "columns = []  # with changed: only these columns (col or table.col)\n"
        'on_conflict = "fail"  # skip | overwrite | fail\n'
        "sample_rows = 5  # rows shown per table and kind\n"
        "apply = False  # True: apply the plan"
    ),
    new_code_cell(
        "from pathlib import Path\n"
        "import yaml\n"
        "from IPython.display import HTML, Markdown, display\n"
        "from restore_assets.core import report\n"
        "from restore_assets.backends.factory import build_services\n"
        "from restore_assets.core.compare import compare_schemas\n"
        "from restore_assets.core.recover.plan import Options\n"
        "from restore_assets.core.recover import run as recover_run\n"
        "config = yaml.safe_load(Path(config_file).read_text()) if config_file else {}\n"
        "config.update({'backend': backend, 'root': str(Path(root).resolve()), 'html_report': False})\n"
        "services = build_services(config)\n"
        "options = Options(deleted=deleted, changed=changed, columns=list(columns) or None,\n"
        "                  on_conflict=on_conflict, tables=list(tables) or None)"
    ),
    new_markdown_cell("## 1. The plan (computed in one read-only snapshot; nothing written)"),
    new_code_cell(
        "plan = recover_run.plan(services, restore_id, options)\n"
        "summary = plan.summary()\n"
        "display(Markdown(f'Recovery **{plan.recovery_id}** of restore **{plan.restore_id}** '\n"
        "                 f'in database **{plan.database}**'))\n"
        "display(HTML(report.html_table(['table', 'inserts', 'updates', 'conflicts', 'added by FK', 'skipped'],\n"
        "    [(t, c['inserts'], c['updates'], c['conflicts'], c['added_by_foreign_keys'], c['skipped'])\n"
        "     for t, c in summary['tables'].items()])))\n"
        "why = [(f'{s.live_schema}.{t}', r['reason'], r.get('fk', ''), r['count'])\n"
        "       for s in plan.schemas for t in s.order for r in s.tables[t].reasons]\n"
        "display(HTML(report.html_table(['table', 'why', 'foreign key', 'rows'], why)))\n"
        "for s in plan.schemas:\n"
        "    for note in s.notes:\n"
        "        display(Markdown(f'note: {note}'))\n"
        "if plan.refused:\n"
        "    display(Markdown(f'**refused**: {plan.refused}'))"
    ),
    new_markdown_cell(
        "## 2. Sample rows (restored value | live value for updates; long values cut)"
    ),
    new_code_cell(
        "for table, sample in recover_run.samples(services, plan, limit=sample_rows).items():\n"
        "    if sample['inserts']:\n"
        "        cols = list(sample['inserts'][0])\n"
        "        display(Markdown(f\"**{table}**: rows to insert (first {len(sample['inserts'])} of {sample['inserts_total']})\"))\n"
        "        display(HTML(report.html_table(cols, [[r.get(c) for c in cols] for r in sample['inserts']])))\n"
        "    if sample['updates']:\n"
        "        display(Markdown(f\"**{table}**: rows to set back (first {len(sample['updates'])} of {sample['updates_total']})\"))\n"
        "        display(HTML(report.html_table(['key', 'column', 'restored (at T)', 'live (now)'],\n"
        "            [(u['key'], c, v[0], v[1]) for u in sample['updates'] for c, v in u['columns'].items()])))"
    ),
    new_markdown_cell("## 3. Apply (one transaction; live versions saved for undo)"),
    new_code_cell(
        "applied = None\n"
        "if plan.refused:\n"
        "    raise RuntimeError(f'the plan is refused: {plan.refused}')\n"
        "if not apply:\n"
        "    display(Markdown('**not applied**: run again with `apply = True`'))\n"
        "else:\n"
        "    applied = recover_run.apply(services, plan)\n"
        "    display(HTML(report.html_table(['table', 'inserted', 'updated', 'overwritten', 'skipped'],\n"
        "        [(t, c['inserted'], c['updated'], c['overwritten'], c.get('skipped', 0))\n"
        "         for t, c in applied['tables'].items()])))\n"
        "    for m in applied['moved_since_plan']:\n"
        "        display(Markdown(f'moved since the plan: {m}'))\n"
        '    display(Markdown(f"undo: `restore-assets recover --root {root} --undo {plan.recovery_id}`"))'
    ),
    new_markdown_cell("## 4. Compare again: what remains different"),
    new_code_cell(
        "dsn = services.fleet.production_dsn(plan.database)\n"
        "rows = []\n"
        "for s in plan.schemas:\n"
        "    result = compare_schemas(dsn, s.live_schema, s.restored_schema)\n"
        "    for t, c in sorted(result.tables.items()):\n"
        "        rows.append((f'{s.live_schema}.{t}', c.only_in_restored, c.only_in_live, c.changed,\n"
        "                     ', '.join(c.changed_columns)))\n"
        "display(HTML(report.html_table(['table', 'only in restored', 'only in live (added since)',\n"
        "                                'changed', 'changed columns'], rows)))"
    ),
]


SERVER_RESTORE = [
    new_markdown_cell(
        "# Instance restore runbook\n"
        "\n"
        "Restores the whole database server **in place** from a snapshot, keeping its identifier, endpoint and\n"
        "DSN: the original is renamed (`<id>-old-<suffix>`; locally `data.old-<suffix>`), the snapshot is\n"
        "restored under the original name with all of its configuration, and the renamed original is removed\n"
        "only once the restored one is available and verified (on AWS with a final snapshot). A failure at any\n"
        "step puts the original back under its name. On a fleet backed up by pgBackRest the server can\n"
        "instead be restored to a point in time (`restore_time`).\n"
        "\n"
        "1. Set the parameters below (or pass them with `papermill -p`).\n"
        "2. Run the pre-flight: it shows what will happen and the configuration that will be preserved, and\n"
        "   **stops** unless `confirm = True`.\n"
        "3. With `confirm = True` the `instance_restore` job runs in this process; the result is shown at the end\n"
        "   and recorded in the audit log (`restore-assets history --restore-id ...`)."
    ),
    parameters_cell(
        "# Parameters (papermill: -p name value)\n"
        'root = ""  # local fleet root (backend local); default $RESTORE_ASSETS_ROOT\n'
        'backend = "local"  # local | aws\n'
        'config_file = ""  # backend YAML (aws:, alerts:, instance_restore:)\n'
        'task = "db_restore"  # db_restore | create_snapshot (take a snapshot first, restore from it)\n'
        'snapshot_id = ""  # the snapshot to restore (task db_restore)\n'
        'restore_time = ""  # or a point in time, ISO 8601 with zone (pgBackRest fleets; not with snapshot_id)\n'
        'identifier = ""  # RDS instance or cluster (aws; default aws.source_identifier)\n'
        'snapshot_identifier = ""  # name of the snapshot task create_snapshot takes\n'
        'suffix = ""  # the original is renamed <id>-old-<suffix> (default: UTC time)\n'
        "keep_old = False  # keep the renamed original\n"
        "skip_final_snapshot = False  # aws: delete the renamed original without a final snapshot\n"
        "confirm = False  # nothing destructive happens unless True"
    ),
    new_code_cell(
        "import json\n"
        "\n"
        "from restore_assets.backends.factory import default_root\n"
        "from restore_assets.jobs.instance_restore import plan_instance_restore_job, run_instance_restore_job\n"
        "\n"
        'request = {"task": task}\n'
        "for key, value in {\n"
        '    "snapshot_id": snapshot_id,\n'
        '    "restore_time": restore_time,\n'
        '    "identifier": identifier,\n'
        '    "snapshot_identifier": snapshot_identifier,\n'
        '    "suffix": suffix,\n'
        "}.items():\n"
        "    if value:\n"
        "        request[key] = value\n"
        "if keep_old:\n"
        '    request["keep_old"] = True\n'
        "if skip_final_snapshot:\n"
        '    request["skip_final_snapshot"] = True\n'
        'backend_config = {"backend": backend, "root": root or default_root(), "config_file": config_file}\n'
        'print("request:", json.dumps(request))'
    ),
    new_markdown_cell(
        "## Pre-flight\n"
        "\n"
        "Read-only: checks the server, the snapshot and every name the restore will use, and shows the\n"
        "configuration the restored server keeps. Nothing is changed."
    ),
    new_code_cell(
        "plan = plan_instance_restore_job(request, backend_config)\n"
        "print(f\"{plan['task']} of {plan['identifier']} ({plan['topology']})\")\n"
        'for i, step in enumerate(plan["steps"], 1):\n'
        '    print(f"  {i}. {step}")\n'
        'print("configuration that will be preserved:")\n'
        'print(json.dumps(plan["preserved_configuration"], indent=2, default=str))\n'
        'for member in plan["members"]:\n'
        '    print("member:", json.dumps(member, default=str))\n'
        'for warning in plan["warnings"]:\n'
        '    print("WARNING:", warning)\n'
        'print("PLAN_JSON: " + json.dumps(plan, default=str))'
    ),
    new_code_cell(
        "if not confirm:\n"
        "    raise RuntimeError(\n"
        '        "pre-flight only: nothing was changed. Check the plan above, then re-run with confirm=True"\n'
        '        " (papermill -p confirm True) to restore."\n'
        "    )"
    ),
    new_markdown_cell(
        "## Restore\n"
        "\n"
        "Runs the `instance_restore` job in this process (every step recorded in the audit log; a failure rolls\n"
        "back and alerts)."
    ),
    new_code_cell(
        "result = run_instance_restore_job(request, backend_config)\n"
        "print(f\"{result.get('kind', 'instance_restore')} {result['restore_id']}: {result['status']}\")\n"
        'if result.get("cause"):\n'
        '    print("cause:", result["cause"])\n'
        'for step, info in (result.get("steps") or {}).items():\n'
        '    if not info.get("not_requested"):\n'
        '        state = "ok" if info["ok"] else ("skipped" if info["skipped"] else "FAILED")\n'
        "        print(f\"  {step:<10} {state:<8} {info['seconds']:>7.1f}s\")\n"
        'print("RESULT_JSON: " + json.dumps(result, default=str))'
    ),
    new_code_cell(
        'assert result["status"] == "succeeded", (\n'
        "    f\"instance restore {result['status']}: {result.get('cause')}\"\n"
        ")"
    ),
]


if __name__ == "__main__":
    save("comparison_report.ipynb", COMPARISON)
    save("schema_restore_runbook.ipynb", RUNBOOK)
    save("recovery_runbook.ipynb", RECOVERY)
    save("instance_restore_runbook.ipynb", SERVER_RESTORE)
    print("wrote the notebooks under", NOTEBOOKS)

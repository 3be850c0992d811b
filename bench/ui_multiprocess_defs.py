"""`schema_restore` with Dagster's multiprocess executor (every op its own process), for
bench/ui_bench.py to compare against the in-process executor that definitions.py ships."""

import dagster as dg

from restore_assets.jobs.definitions import resources_from_env
from restore_assets.jobs.report_asset import comparison_report
from restore_assets.jobs.schema_restore import schema_restore

defs = dg.Definitions(
    assets=[comparison_report],
    jobs=[schema_restore],
    resources=resources_from_env(),
    executor=dg.multiprocess_executor,
)

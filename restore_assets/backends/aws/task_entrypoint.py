"""Entry point of the pg tools container on ECS (`python -m restore_assets.backends.aws.task_entrypoint`).

Modes:
  extract     read the temporary secret, pg_dump the schemas, split/rename/guard with the DDL
              engine; write pre.sql, post.sql, full.sql and ddl/bundle.json to S3 (SSE)
  apply-pre   apply the spec's statements to production with the production secret, in one
  apply-post  transaction; apply-pre records the schemas it creates (with the transaction id)
              in the audit table before anything runs
  copy        the parallel COPY mover: temporary database -> production (mover: copy)

Each mode reads its spec from S3 (`--spec`) and writes `{"ok": ..., ...}` to `--result`. No
secret value is printed; errors are redacted. Exit code 0 on success, 1 on failure, 2 on usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from restore_assets.backends.aws.artifacts import S3Artifacts
from restore_assets.backends.aws.clients import shared_session
from restore_assets.backends.aws.secrets import Credentials, SecretStore, redact

MODES = ("extract", "apply-pre", "apply-post", "copy")
SCHEMA_RESOURCE = "restored-schema"
Resolve = Callable[[str, int], tuple[str, int]]

log = logging.getLogger("restore_assets.task")


class TaskContext:
    """What one task run needs: its environment, AWS clients, artifacts and secrets."""

    def __init__(
        self,
        env: Mapping[str, str],
        restore_id: str,
        resolve: Resolve | None = None,
        session: Any = None,
    ) -> None:
        self.env = env
        self.restore_id = restore_id
        self.resolve = resolve
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        endpoint = env.get("RESTORE_ASSETS_AWS_ENDPOINT_URL") or None
        session = session or shared_session(None, region)
        self.s3 = session.client("s3", endpoint_url=endpoint)
        self.secretsmanager = session.client("secretsmanager", endpoint_url=endpoint)
        self.dynamodb = session.client("dynamodb", endpoint_url=endpoint)
        self.artifacts = S3Artifacts(
            self.s3,
            self._require("RESTORE_ASSETS_ARTIFACT_BUCKET"),
            env.get("RESTORE_ASSETS_ARTIFACT_PREFIX", "restores/"),
            env.get("RESTORE_ASSETS_ARTIFACT_SSE", "AES256"),
            env.get("RESTORE_ASSETS_ARTIFACT_KMS_KEY_ID") or None,
        )
        self.secrets = SecretStore(self.secretsmanager)

    def _require(self, name: str) -> str:
        value = self.env.get(name)
        if not value:
            raise SystemExit(f"environment variable {name} is required")
        return value

    def dsn(self, creds: Credentials, database: str) -> str:
        """A DSN from a secret's credentials and address (never printed)."""
        if not creds.host or not creds.port:
            raise RuntimeError("the secret has no host/port: cannot tell where the database is")
        host, port = creds.host, int(creds.port)
        if self.resolve is not None:
            host, port = self.resolve(host, port)
        return creds.dsn(host, port, database, self.env.get("RESTORE_ASSETS_DB_SSLMODE", "prefer"))

    def temp_dsn(self, database: str) -> str:
        """DSN of the temporary database (historical credentials, temporary secret)."""
        return self.dsn(self.secrets.current(self._require("RESTORE_ASSETS_TEMP_SECRET")), database)

    def production_dsn(self, database: str) -> str:
        """DSN of production (the production secret's current credentials)."""
        return self.dsn(self.secrets.current(self._require("RESTORE_ASSETS_PROD_SECRET")), database)


def run_extract(ctx: TaskContext, spec: dict[str, Any]) -> dict[str, Any]:
    """pg_dump + split + rename; store pre.sql, post.sql, full.sql and the bundle as JSON."""
    from dataclasses import asdict

    from restore_assets.core import ddl

    bundle = ddl.extract(ctx.temp_dsn(spec["database"]), list(spec["schemas"]), spec["suffix"])
    ddl.guard(bundle.pre + bundle.post, bundle.target_schemas)
    rid = ctx.restore_id
    uris = {
        "pre.sql": ctx.artifacts.put(rid, "pre.sql", bundle.pre_sql),
        "post.sql": ctx.artifacts.put(rid, "post.sql", bundle.post_sql),
        "full.sql": ctx.artifacts.put(rid, "full.sql", bundle.full_sql),
        "bundle": ctx.artifacts.put(rid, "ddl/bundle.json", json.dumps(asdict(bundle))),
    }
    return {
        "artifacts": uris,
        "pre_statements": len(bundle.pre),
        "post_statements": len(bundle.post),
        "warnings": list(bundle.warnings),
    }


def run_apply(ctx: TaskContext, spec: dict[str, Any], stage: str) -> dict[str, Any]:
    """Guard and apply: pre in one transaction recording the schemas it creates; post in waves."""
    import psycopg

    from restore_assets.core import ddl

    statements = list(spec["statements"])
    allowed = set(spec["allowed_schemas"])
    database = spec["database"]
    lock_timeout = ctx.env.get("RESTORE_ASSETS_LOCK_TIMEOUT", "5s")
    if stage == "post":
        from restore_assets.core.ddl.parallel import apply_post

        workers = int(ctx.env.get("RESTORE_ASSETS_POST_WORKERS", "4"))
        waves = apply_post(
            ctx.production_dsn(database),
            statements,
            allowed,
            workers=workers,
            lock_timeout=lock_timeout,
        )
        return {"stage": stage, "xid": None, "statements": len(statements), "waves": waves}
    ddl.guard(statements, allowed)
    audit = None
    table = ctx.env.get("RESTORE_ASSETS_AUDIT_TABLE")
    if table:
        from restore_assets.backends.aws.audit import DynamoAuditLog

        audit = DynamoAuditLog(ctx.dynamodb, table)
    with psycopg.connect(ctx.production_dsn(database)) as conn:
        xid = int(conn.execute("SELECT pg_catalog.txid_current()").fetchone()[0])
        existing = {
            r[0]
            for r in conn.execute(
                "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s)",
                (sorted(allowed),),
            )
        }
        created = sorted(allowed - existing)
        if audit is not None:
            for schema in created:
                audit.resource(
                    ctx.restore_id,
                    SCHEMA_RESOURCE,
                    f"{database}.{schema}",
                    {"database": database, "schema": schema, "xid": xid},
                )
        ddl.apply(conn, statements, lock_timeout=lock_timeout)
    return {"stage": stage, "xid": xid if created else None, "statements": len(statements)}


def run_copy(ctx: TaskContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Copy one schema with the parallel COPY mover."""
    from restore_assets.core.mover import copy_schema

    report = copy_schema(
        ctx.temp_dsn(spec["database"]),
        ctx.production_dsn(spec["database"]),
        spec["schema"],
        spec["target_schema"],
        workers=int(spec.get("workers") or 4),
        tables=spec.get("tables"),
        progress=lambda t: print(
            f"copied {t.schema}.{t.table} -> {t.target_schema}: {t.rows} rows", flush=True
        ),
    )
    return {"report": report.to_dict()}


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the task entry point."""
    p = argparse.ArgumentParser(prog="restore-assets-task", description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=MODES)
    p.add_argument("--restore-id", required=True)
    p.add_argument("--spec", required=True, help="artifact name of the JSON spec")
    p.add_argument("--result", required=True, help="artifact name to write the JSON result to")
    return p


def _pipes(env: Mapping[str, str]) -> Any:
    """A Dagster Pipes context when launched through PipesECSClient (else None)."""
    if "DAGSTER_PIPES_CONTEXT" not in env:
        return None
    try:
        from dagster_pipes import (
            PipesContext,
            PipesDefaultContextLoader,
            PipesDefaultMessageWriter,
            PipesMappingParamsLoader,
        )
    except ImportError:
        return None
    loader = PipesMappingParamsLoader(dict(env))
    if not loader.is_dagster_pipes_process():
        return None
    # a fresh context per run (open_dagster_pipes() would reuse a closed process-wide one)
    context = PipesContext(loader, PipesDefaultContextLoader(), PipesDefaultMessageWriter())
    PipesContext.set(context)
    return context


def main(
    argv: list[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    resolve: Resolve | None = None,
    session: Any = None,
) -> int:
    """Run one mode; write its result to S3; 0 on success, 1 on failure."""
    env = dict(os.environ if environ is None else environ)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    pipes = _pipes(env)
    with pipes if pipes is not None else contextlib.nullcontext():
        return _run(args, env, resolve, session, pipes)


def _run(
    args: argparse.Namespace, env: dict[str, str], resolve: Any, session: Any, pipes: Any
) -> int:
    ctx = TaskContext(env, args.restore_id, resolve=resolve, session=session)
    started = time.monotonic()
    try:
        spec = json.loads(ctx.artifacts.get(args.restore_id, args.spec))
        if args.mode == "extract":
            result = run_extract(ctx, spec)
        elif args.mode == "copy":
            result = run_copy(ctx, spec)
        else:
            result = run_apply(ctx, spec, args.mode.split("-", 1)[1])
        result = {"ok": True, "mode": args.mode, **result}
        rc = 0
    except Exception as exc:  # noqa: BLE001 - reported in the result, redacted, exit code 1
        result = {"ok": False, "mode": args.mode, "error": redact(f"{type(exc).__name__}: {exc}")}
        rc = 1
    result["seconds"] = round(time.monotonic() - started, 3)
    ctx.artifacts.put(args.restore_id, args.result, json.dumps(result, default=str))
    line = f"restore-assets task {args.mode} for {args.restore_id}: " + (
        "ok" if rc == 0 else f"failed: {result['error']}"
    )
    print(redact(line), flush=True)
    if pipes is not None:
        pipes.log.info(redact(line))
        pipes.report_custom_message(result)
    return rc


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    sys.exit(main())

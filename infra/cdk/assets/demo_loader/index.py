"""Custom resource handler: create database tenant_a and load the demo tenant schemas into it.

Runs in a Lambda function inside the VPC, invoked by the CDK Provider framework. It reads the
master credentials from Secrets Manager (SECRET_ARN), creates the database if missing and, for
each schema that does not exist yet, runs demo_tenant.sql with {{SCHEMA_NAME}} replaced, in one
transaction. Existing schemas are left alone, so updates and retries are idempotent. Delete does
nothing: the data goes away with the database.

Needs pg8000 (a pure-Python driver) from the Lambda layer built by infra/cdk/build_layer.py.
No credential is ever logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
import time
from pathlib import Path
from typing import Any

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

SQL_FILE = Path(__file__).resolve().parent.parent / "demo_tenant.sql"
PLACEHOLDER = "{{SCHEMA_NAME}}"
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# RDS CA bundle, present when the layer was built with `build_layer.py --rds-ca`.
CA_BUNDLES = (Path("/opt/python/rds-global-bundle.pem"), Path("/opt/rds-global-bundle.pem"))
CONNECT_ATTEMPTS = 10
RETRY_SECONDS = 15


class LoaderError(RuntimeError):
    """The demo data could not be loaded; the message says why."""


def checked_identifier(name: str) -> str:
    """Return `name` if it is a plain lowercase PostgreSQL identifier, else raise."""
    if not IDENTIFIER.fullmatch(name):
        raise LoaderError(f"not a plain lowercase identifier: {name!r}")
    return name


def render_sql(template: str, schema: str) -> str:
    """The demo tenant SQL for one schema: the placeholder replaced, in one transaction."""
    if PLACEHOLDER not in template:
        raise LoaderError(f"{SQL_FILE.name} has no {PLACEHOLDER} placeholder")
    body = template.replace(PLACEHOLDER, checked_identifier(schema))
    return f"BEGIN;\n{body}\n;\nCOMMIT;\n"


def ssl_context() -> ssl.SSLContext:
    """TLS for the connection: verified with the RDS CA bundle when the layer ships it."""
    for bundle in CA_BUNDLES:
        if bundle.is_file():
            return ssl.create_default_context(cafile=str(bundle))
    LOG.info("no RDS CA bundle in the layer: TLS without certificate verification")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _credentials(secret_arn: str) -> dict[str, Any]:
    import boto3  # in the Lambda runtime

    client = boto3.client("secretsmanager")
    return json.loads(client.get_secret_value(SecretId=secret_arn)["SecretString"])


def connect(secret_arn: str, database: str) -> Any:
    """Connect to `database`, re-reading the secret between attempts (rotation may be running)."""
    import pg8000.native

    last_error: Exception | None = None
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        secret = _credentials(secret_arn)
        try:
            return pg8000.native.Connection(
                user=secret["username"],
                password=secret["password"],
                host=secret["host"],
                port=int(secret.get("port", 5432)),
                database=database,
                ssl_context=ssl_context(),
                timeout=60,
            )
        except (pg8000.native.InterfaceError, pg8000.native.DatabaseError, OSError) as exc:
            last_error = exc
            LOG.info(
                "connect to %s failed (attempt %d/%d): %s",
                database,
                attempt,
                CONNECT_ATTEMPTS,
                type(exc).__name__,
            )
            time.sleep(RETRY_SECONDS)
    raise LoaderError(f"could not connect to database {database}: {last_error}")


def load(secret_arn: str, database: str, schemas: list[str]) -> dict[str, str]:
    """Create `database` if missing and load each missing schema; return what was done."""
    database = checked_identifier(database)
    template = SQL_FILE.read_text(encoding="utf-8")
    done: dict[str, str] = {}

    admin = connect(secret_arn, "postgres")
    try:
        exists = admin.run("SELECT 1 FROM pg_database WHERE datname = :name", name=database)
        if not exists:
            admin.run(f'CREATE DATABASE "{database}"')
            done[database] = "created"
        else:
            done[database] = "existed"
    finally:
        admin.close()

    conn = connect(secret_arn, database)
    try:
        for schema in schemas:
            schema = checked_identifier(schema)
            present = conn.run(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = :name", name=schema
            )
            if present:
                done[schema] = "existed"
                continue
            conn.run(render_sql(template, schema))
            done[schema] = "loaded"
            LOG.info("loaded schema %s.%s", database, schema)
    finally:
        conn.close()
    return done


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """CloudFormation custom resource entry point (Provider framework on_event handler)."""
    props = event.get("ResourceProperties", {})
    database = props.get("Database", "tenant_a")
    schemas = list(props.get("Schemas", ["customer_a1", "customer_a2"]))
    physical_id = f"demo-tenants-{database}"
    request = event.get("RequestType")
    LOG.info("%s demo tenants: database %s, schemas %s", request, database, schemas)
    if request == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId", physical_id)}
    done = load(os.environ["SECRET_ARN"], database, schemas)
    return {"PhysicalResourceId": physical_id, "Data": {"Result": json.dumps(done)}}

"""`restore-assets serve-reports`: the comparison reports over HTTP, read-only, on 127.0.0.1 by default."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from restore_assets.cli.common import add_command
from restore_assets.core.errors import RestoreError
from restore_assets.core.report_server import DEFAULT_HOST, DEFAULT_PORT, URL_ENV, report_server


def cmd_serve_reports(args: argparse.Namespace) -> int:
    """Serve `<root>/artifacts/<restore id>/*.html|*.json` until interrupted."""
    artifacts = Path(args.root) / "artifacts"
    if not artifacts.is_dir():
        raise RestoreError(f"no reports yet: {artifacts} does not exist (run a restore first)")
    try:
        server = report_server(artifacts, args.host, args.port)
    except OSError as exc:
        raise RestoreError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror}): choose another --port"
        ) from None
    url = f"http://{args.host}:{server.server_address[1]}"
    print(f"serving the reports of {artifacts} on {url} (read-only; Ctrl-C stops)", flush=True)
    if args.port != DEFAULT_PORT or args.host != DEFAULT_HOST:
        print(f"for links from the Dagster UI, start Dagster with {URL_ENV}={url}", file=sys.stderr)
    # a parent that ignored or blocked SIGTERM (some launchers do) must not make the server unstoppable
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def register(sub: Any) -> None:
    """Add the serve-reports command to the CLI."""
    p = add_command(
        sub,
        "serve-reports",
        "serve the HTML comparison reports (read-only, 127.0.0.1 by default)",
        cmd_serve_reports,
        backend=False,
    )
    p.add_argument(
        "--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)"
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="default %(default)s")

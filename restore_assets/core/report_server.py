"""A small read-only HTTP server for the comparison reports under a fleet's artifacts directory."""

from __future__ import annotations

import os
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
URL_ENV = "RESTORE_ASSETS_REPORTS_URL"
SERVED_SUFFIXES = (".html", ".json")


def reports_base_url() -> str:
    """Where `serve-reports` is reached from a browser: $RESTORE_ASSETS_REPORTS_URL or the default."""
    return os.environ.get(URL_ENV) or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


def report_url(restore_id: str, path: str, base: str | None = None) -> str:
    """The URL of one restore's report file (`<base>/<restore id>/<file name>`)."""
    name = Path(path.removeprefix("file://")).name
    return f"{(base or reports_base_url()).rstrip('/')}/{quote(restore_id)}/{quote(name)}"


class ReportHandler(SimpleHTTPRequestHandler):
    """GET/HEAD of `<restore id>/<report>.html|.json` files under the root; nothing else."""

    root: Path

    def translate_path(self, path: str) -> str:
        """The file a URL names, or "" when it is not a report file inside the root."""
        candidate = Path(super().translate_path(path))
        try:
            real = candidate.resolve(strict=True)
        except OSError:
            return ""
        inside = real.parent.parent == self.root and real.is_file()
        return str(real) if inside and real.suffix in SERVED_SUFFIXES else ""

    def send_head(self):  # noqa: ANN201 - the base class's signature
        """Refuse anything that is not a report file (no directory listing, no other file)."""
        if not self.translate_path(self.path):
            self.send_error(404, "not a report")
            return None
        return super().send_head()

    def list_directory(self, path):  # noqa: ANN001, ANN201 - never list a directory
        """Directories are not listed."""
        self.send_error(404, "not a report")
        return None

    def end_headers(self) -> None:
        """No caching of reports, which can hold sample rows."""
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: one line per request on stderr only when verbose (the server's caller decides)."""


def report_server(
    root: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> ThreadingHTTPServer:
    """A server (not yet serving) of the report files under root (a fleet's artifacts directory)."""
    real_root = Path(root).resolve(strict=True)
    handler = type("BoundReportHandler", (ReportHandler,), {"root": real_root})
    return ThreadingHTTPServer((host, port), partial(handler, directory=str(real_root)))

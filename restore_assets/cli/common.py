"""What every command of the `restore-assets` CLI shares: common options, output, exit codes."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from restore_assets.backends.factory import default_root
from restore_assets.core.errors import RestoreError

# exit code of a run's final status (anything else: 1)
EXIT = {"succeeded": 0, "failed": 1, "rejected": 2}


def restore_id_arg(value: str) -> str:
    """argparse type of every --restore-id: a safe name, never a path (exit 2 otherwise)."""
    from restore_assets.core.audit import check_restore_id
    from restore_assets.core.errors import InvalidRequest

    try:
        return check_restore_id(value)
    except InvalidRequest as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_command(
    sub: Any, name: str, help: str, fn: Callable[[argparse.Namespace], Any], backend: bool = True
) -> argparse.ArgumentParser:
    """A sub-command running fn, with --root and --json (and --backend, --config unless not)."""
    p = sub.add_parser(name, help=help)
    add_common(p)
    if backend:
        add_backend(p)
    p.set_defaults(fn=fn)
    return p


def add_group(sub: Any, name: str, help: str) -> Any:
    """A command group (`restore-assets NAME SUB-COMMAND`); returns its sub-commands."""
    return sub.add_parser(name, help=help).add_subparsers(dest=f"{name}_cmd", required=True)


def flag(p: Any, name: str, help: str) -> None:
    """Add an on/off option (store_true) to a parser or a group of exclusive options."""
    p.add_argument(name, action="store_true", help=help)


def add_target(p: argparse.ArgumentParser) -> None:
    """Add --database and the repeatable --schema of the schemas to restore."""
    p.add_argument("--database", required=True)
    p.add_argument("--schema", action="append", required=True, help="repeat for several schemas")


def add_common(p: argparse.ArgumentParser) -> None:
    """Add --root (the local fleet) and --json."""
    p.add_argument(
        "--root",
        default=default_root(),
        help="local fleet root directory (default: %(default)s)",
    )
    flag(p, "--json", "print JSON")


def add_backend(
    p: argparse.ArgumentParser, config_help: str = "backend configuration YAML (AWS settings)"
) -> None:
    """Add --backend and --config (read by ``backend_config``)."""
    p.add_argument(
        "--backend", choices=["local", "aws"], help="backend (default local, or from --config)"
    )
    p.add_argument("--config", help=config_help)


def backend_config(args: argparse.Namespace) -> dict[str, Any]:
    """The backend configuration mapping from --backend, --root and --config."""
    cfg: dict[str, Any] = {}
    if getattr(args, "config", None):
        import yaml

        cfg = yaml.safe_load(Path(args.config).read_text()) or {}
        cfg["config_file"] = str(Path(args.config).resolve())
    if getattr(args, "backend", None):
        cfg["backend"] = args.backend
    cfg.setdefault("backend", "local")
    cfg["root"] = args.root
    if getattr(args, "workers", None):
        cfg["copy_workers"] = args.workers
    return cfg


def backend_services(args: argparse.Namespace) -> Any:
    """The backend's services (fleet, audit log, artifacts...) for --backend, --root and --config."""
    from restore_assets.backends.factory import build_services

    return build_services(backend_config(args))


def emit(args: argparse.Namespace, data: Any, text: Callable[[Any], str] | None = None) -> None:
    """Print data as JSON with --json (or when there is no text form), else as text(data)."""
    if getattr(args, "json", False) or text is None:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text(data))


def finish(args: argparse.Namespace, out: dict[str, Any], text: Callable[[Any], str]) -> int:
    """Print a run's outcome; its exit code (a rejected request: its cause on stderr, exit 2)."""
    if out["status"] == "rejected" and not args.json:
        print(f"error: {out['cause']}", file=sys.stderr)
        return 2
    emit(args, out, text)
    return EXIT.get(out["status"], 1)


@contextlib.contextmanager
def known_restore(restore_id: str, hint: str = ": see `restore-assets history`") -> Iterator[None]:
    """Within the block, a KeyError (no such restore in the audit log) is a user error."""
    try:
        yield
    except KeyError:
        raise RestoreError(f"unknown restore id {restore_id!r}{hint}") from None

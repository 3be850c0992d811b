"""The `restore-assets` command line: fleet, demo, restore, cleanup, history, compare, copy-back."""

from __future__ import annotations

import argparse
import logging
import sys

from restore_assets.cli import aws, compare, drill, fleet, recover, reports, restore, server_restore
from restore_assets.core.errors import RestoreError

# each adds its commands, in this order, to the parser's sub-commands
COMMAND_GROUPS = (fleet, restore, compare, server_restore, aws, recover, reports, drill)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(prog="restore-assets", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `restore-assets` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("restore_assets").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        rc = args.fn(args)
    except RestoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

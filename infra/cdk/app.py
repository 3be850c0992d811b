#!/usr/bin/env python3
"""CDK app entry point: `python app.py [-c key=value ...]` or `npx aws-cdk@2 synth [-c ...]`.

Run directly (as `make cdk-synth` does) it synthesizes into cdk.out/ next to this file; run by
the cdk CLI it writes where the CLI says (CDK_OUTDIR). No AWS account, no network: the stack is
environment-agnostic and does no lookups.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import aws_cdk as cdk  # noqa: E402
from restore_assets_infra.config import ConfigError  # noqa: E402
from restore_assets_infra.stack import build  # noqa: E402


def parse_context_args(argv: list[str]) -> dict[str, str]:
    """`-c key=value` / `--context key=value` pairs, as the cdk CLI accepts them."""
    context: dict[str, str] = {}
    args = iter(argv)
    for arg in args:
        if arg in ("-c", "--context"):
            pair = next(args, None)
        elif arg.startswith("--context="):
            pair = arg.split("=", 1)[1]
        else:
            raise ConfigError(f"unexpected argument {arg!r}: use -c key=value")
        if pair is None or "=" not in pair:
            raise ConfigError(f"context argument {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        context[key] = value
    return context


def main(argv: list[str] | None = None) -> int:
    """Synthesize the app; bad settings print a message and exit 2, without a stack trace."""
    try:
        context = parse_context_args(sys.argv[1:] if argv is None else argv)
        outdir = None if os.environ.get("CDK_OUTDIR") else str(HERE / "cdk.out")
        app = cdk.App(outdir=outdir, context=context)
        stack = build(app)
        assembly = app.synth()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if outdir is not None:
        print(f"synthesized stack {stack.stack_name} into {assembly.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the AWS backend configuration YAML from the outputs of `cdk deploy`.

    cdk deploy -c selectedDatabase=SingleAz --outputs-file cdk-outputs.json
    python backend_config.py cdk-outputs.json > backend.yaml

Builds the YAML from the stack's individual outputs (RegionName, SourceIdentifier, ...); if
they are missing it falls back to the `BackendConfigYaml` output, which holds the whole
document. Needs only the standard library (no aws_cdk, no node).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from restore_assets_infra.backend_yaml import (  # noqa: E402
    AWS_KEYS,
    BACKEND_YAML_OUTPUT,
    LIST_KEYS,
    OUTPUT_KEYS,
    render_backend_yaml,
)

# Outputs that may be absent: no production secret known (existing database, none given).
OPTIONAL_OUTPUTS = frozenset({"SecretArn"})


class OutputsError(ValueError):
    """The outputs file does not hold what is needed; the message says what to do."""


def stack_outputs(outputs: dict[str, Any], stack: str | None) -> dict[str, str]:
    """The outputs of `stack` (or of the only stack in the file)."""
    if stack is None:
        if len(outputs) != 1:
            raise OutputsError(
                f"the outputs file has stacks {sorted(outputs)}: choose one with --stack"
            )
        stack = next(iter(outputs))
    if stack not in outputs:
        raise OutputsError(f"stack {stack!r} is not in the outputs file ({sorted(outputs)})")
    return outputs[stack]


def backend_yaml(outputs: dict[str, str]) -> str:
    """The backend configuration YAML from one stack's outputs."""
    missing = [k for k in OUTPUT_KEYS if k not in outputs and k not in OPTIONAL_OUTPUTS]
    if missing:
        if BACKEND_YAML_OUTPUT in outputs:
            return outputs[BACKEND_YAML_OUTPUT].rstrip("\n") + "\n"
        raise OutputsError(
            f"outputs {', '.join(missing)} are missing: was the file written by"
            " `cdk deploy --outputs-file` for the restore-assets stack?"
        )
    values: dict[str, Any] = {"parameter_group": None}
    for output_key, yaml_key in OUTPUT_KEYS.items():
        value = outputs.get(output_key)
        if yaml_key in LIST_KEYS:
            values[yaml_key] = [v for v in (value or "").split(",") if v]
        else:
            values[yaml_key] = value
    assert set(values) == set(AWS_KEYS)
    return render_backend_yaml(values)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: print (or write with -o) the YAML."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs_file", type=Path, help="cdk-outputs.json from cdk deploy")
    parser.add_argument("--stack", help="stack name, when the file holds several")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        outputs = json.loads(args.outputs_file.read_text(encoding="utf-8"))
        text = backend_yaml(stack_outputs(outputs, args.stack))
    except (OSError, json.JSONDecodeError, OutputsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

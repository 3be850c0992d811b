"""Run the `restore-assets` command with a pause hook installed, for the crash tests to kill.

    python -m tests.run_paused <selector> <marker file> restore --root ... --json

The selected phase (see tests/faults.py) writes the marker file, then waits until the process is
killed. The product itself has no such switch.
"""

from __future__ import annotations

import sys
from pathlib import Path

from restore_assets import cli, phases
from tests import faults


def main(argv: list[str]) -> int:
    """Install the pause hook for `argv[0]`, then run the CLI with the rest of the arguments."""
    selector, marker, *rest = argv
    phases.phase_hook = faults.pausing(selector, Path(marker))
    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

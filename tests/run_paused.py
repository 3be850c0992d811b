"""Run the `restore-assets` command with a pause installed, for the crash tests to kill.

    python -m tests.run_paused <selector> <marker file> restore --root ... --json

`<selector>` is a phase selector of tests/faults.py (`copy`, `post:after`, ...), or `mid-copy`: the
first table of the copy is copied and committed, the next one waits. Either way the marker file is
written when the pause begins, then the process waits until it is killed. The product itself has
no such switch.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from restore_assets.cli import main as cli
from restore_assets.core import runner
from restore_assets.core.mover import mover
from tests import faults


def pause_mid_copy(marker: Path) -> None:
    """Let the first table copy through, then hold every other table's copy until killed."""
    original = mover._copy_table
    lock = threading.Lock()
    done: list[str] = []

    def copy_table(src, tgt, plan, *args, **kwargs):
        with lock:
            first = not done
            done.append(plan.table)
        if first:
            return original(src, tgt, plan, *args, **kwargs)
        marker.write_text(f"mid-copy before {plan.schema}.{plan.table}\n")
        while True:
            time.sleep(1)

    mover._copy_table = copy_table


def main(argv: list[str]) -> int:
    """Install the pause for `argv[0]`, then run the CLI with the rest of the arguments."""
    selector, marker, *rest = argv
    if selector == "mid-copy":
        pause_mid_copy(Path(marker))
    else:
        runner.phase_hook = faults.pausing(selector, Path(marker))
    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

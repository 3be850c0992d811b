"""The job's loaded code is moved out of the garbage collector's scans once per process."""

from __future__ import annotations

import gc

from restore_assets.jobs import in_process


def test_loaded_code_is_frozen_once() -> None:
    in_process._FROZEN.clear()
    gc.unfreeze()
    try:
        in_process._freeze_loaded_code()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the loaded modules' objects
        garbage = [[] for _ in range(1000)]
        in_process._freeze_loaded_code()  # a second restore of the process: nothing more
        # nothing is added (the 1,000 lists would be); a frozen object may still die meanwhile (a
        # thread left by an earlier test of this worker dropping its last reference)
        assert gc.get_freeze_count() <= frozen and garbage
    finally:
        gc.unfreeze()

"""Which path a provision of a plain snapshot takes, and the sparse copy (no server needed)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from restore_assets.backends.local import selective
from restore_assets.backends.local.pgbackrest import check_invalid_pages
from restore_assets.core.errors import FleetError
from tests.conftest import scratch_dir


def snapshot(tmp: Path, oids: list[int], meta: dict | None) -> tuple[Path, Path]:
    """A snapshot directory with base/<oid>/ holding a relation file and PG_VERSION, and its meta."""
    snap = tmp / "snap"
    for oid in oids:
        d = snap / "base" / str(oid)
        d.mkdir(parents=True)
        (d / "PG_VERSION").write_text("15\n")
        (d / "16400").write_bytes(b"\x01" * 65536)
    (snap / "global").mkdir(parents=True)
    (snap / "global" / "pg_control").write_bytes(b"\x02" * 8192)
    meta_file = tmp / "snap.json"
    if meta is not None:
        meta_file.write_text(json.dumps(meta))
    return snap, meta_file


MAP = {
    "databases": {"template1": 1, "template0": 4, "postgres": 5, "tenant": 16384, "other": 16385},
    "full_page_writes": "on",
}


def test_selective_zero_fills_every_other_database(tmp_path: Path):
    snap, meta = snapshot(tmp_path, [1, 4, 5, 16384, 16385], MAP)
    d = selective.decide(snap, meta, ["tenant"], "on")
    assert d.mode == "selective" and d.zero_oids == {1, 4, 5, 16385}
    assert d.zero_names == ["other", "postgres", "template0", "template1"]
    # restoring postgres itself keeps it
    assert selective.decide(snap, meta, ["postgres"], "on").zero_oids == {1, 4, 16384, 16385}


def test_full_when_asked_or_the_snapshot_does_not_allow_it(tmp_path: Path):
    snap, meta = snapshot(tmp_path, [1, 4, 5, 16384, 16385], MAP)
    assert selective.decide(snap, meta, None, "on").reason == "full provisioning requested"
    assert "full_page_writes" in selective.decide(snap, meta, ["tenant"], "off").reason
    assert "not in the snapshot's map" in selective.decide(snap, meta, ["nope"], "on").reason
    meta.write_text(json.dumps({**MAP, "full_page_writes": "off"}))
    assert selective.decide(snap, meta, ["tenant"], None).mode == "full"
    meta.unlink()
    assert "no database map" in selective.decide(snap, meta, ["tenant"], "on").reason


def test_unmapped_oids_are_copied(tmp_path: Path):
    dbs = {**MAP["databases"], "postgres": 16386}  # postgres dropped and recreated by the user
    snap, meta = snapshot(tmp_path, [1, 4, 16384, 16385, 16386, 16387], {**MAP, "databases": dbs})
    d = selective.decide(snap, meta, ["tenant"], "on")
    assert d.zero_oids == {1, 4, 16385, 16386}  # 16387 is in no map (made during the backup)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory the PostgreSQL server user can read (cp runs as that user)."""
    path = scratch_dir("ra-selective-unit-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_copy_lays_zero_filled_databases_down_sparse(
    shared_tmp: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(selective, "LEAVE_OUT_BELOW", 0)  # every file made, the small ones too
    tmp_path = shared_tmp
    snap, _meta = snapshot(tmp_path, [16384, 16385], MAP)
    (snap / "pg_tblspc").mkdir()
    (snap / "pg_tblspc" / "99").symlink_to(tmp_path / "elsewhere")
    dst = tmp_path / "copy"
    counts = selective.copy_snapshot(snap, dst, {16385})
    zeroed = dst / "base" / "16385" / "16400"
    assert zeroed.stat().st_size == 65536 and zeroed.stat().st_blocks == 0
    assert zeroed.read_bytes() == b"\x00" * 65536
    assert (dst / "base" / "16385" / "PG_VERSION").read_text() == "15\n"  # kept, as pgBackRest
    assert (dst / "base" / "16384" / "16400").read_bytes() == b"\x01" * 65536
    assert (dst / "global" / "pg_control").read_bytes() == b"\x02" * 8192
    assert (dst / "pg_tblspc" / "99").is_symlink()  # a link stays a link, never followed
    assert counts == {
        "bytes_copied": 65536 + 8192 + 3 + 3,
        "bytes_zero_filled": 65536,
        "files_zero_filled": 1,
        "files_left_out": 0,
    }


def test_copy_leaves_out_small_relation_files(shared_tmp: Path):
    snap, _meta = snapshot(shared_tmp, [16384, 16385], MAP)
    other = snap / "base" / "16385"
    big = selective.LEAVE_OUT_BELOW  # the smallest file that is made
    (other / "16401").write_bytes(b"\x03" * big)
    (other / "16401_fsm").write_bytes(b"\x03" * 8192)
    (other / "16402").write_bytes(b"\x03" * (big - 8192))
    (other / "16400_init").write_bytes(b"\x04" * 8192)  # an init fork: always made
    (other / "pg_filenode.map").write_bytes(b"\x05" * 512)  # not a relation: always made
    dst = shared_tmp / "copy"
    counts = selective.copy_snapshot(snap, dst, {16385})
    out = dst / "base" / "16385"
    for name in ("16400", "16401_fsm", "16402"):
        assert not (out / name).exists(), name  # small: no file (replay makes it if it writes)
    assert (out / "16401").stat().st_size == big and (out / "16401").stat().st_blocks == 0
    assert (out / "16400_init").read_bytes() == b"\x00" * 8192
    assert (out / "pg_filenode.map").read_bytes() == b"\x00" * 512
    assert (dst / "base" / "16384" / "16400").read_bytes() == b"\x01" * 65536  # restored: whole
    assert counts["files_left_out"] == 3 and counts["files_zero_filled"] == 3
    assert counts["bytes_zero_filled"] == big + 8192 + 512


def test_full_provision_flag_reaches_the_request():
    from restore_assets.cli.main import build_parser
    from restore_assets.cli.restore import request_from_args
    from restore_assets.core.request import RestoreRequest

    argv = ["restore", "--root", "/x", "--database", "d", "--schema", "s", "--snapshot-id", "x"]
    default = RestoreRequest.parse(request_from_args(build_parser().parse_args(argv)))
    forced = RestoreRequest.parse(
        request_from_args(build_parser().parse_args([*argv, "--full-provision"]))
    )
    assert default.full_provision is False and forced.full_provision is True
    assert forced.to_dict()["full_provision"] is True  # the audit record's inputs say so


RELMAP = {
    "16384": {
        "relations": {
            "1259": ["pg_catalog", "r", "pg_catalog.pg_class"],
            "16400": ["t1", "r", "t1.items"],
            "16401": ["t1", "i", "t1.items_pkey"],
            "16402": ["t2", "r", "t2.items"],
            "16403": ["t2", "t", "pg_toast.pg_toast_16402"],
            "16404": ["t3", "r", "t3.bulk"],
            "16405": ["pg_catalog", "r", "pg_catalog.pg_class"],  # a catalog after VACUUM FULL
        },
        "depends": {"t4": ["t2"]},
    }
}


def test_schemas_zero_fill_other_schemas_relations(tmp_path: Path):
    snap, meta = snapshot(tmp_path, [1, 4, 5, 16384, 16385], MAP)
    relmap = tmp_path / "snap.relmap.json"
    relmap.write_text(json.dumps(RELMAP))
    d = selective.decide(snap, meta, ["tenant"], "on", ["t1"], relmap)
    assert d.path == "schemas" and d.zero_files == {16384: {16402, 16403, 16404}}
    assert d.to_dict()["zero_filled_schemas"] == 2 and d.to_dict()["zero_filled_relations"] == 3
    # a schema depending on another schema: the whole database is copied
    d = selective.decide(snap, meta, ["tenant"], "on", ["t4"], relmap)
    assert d.path == "databases" and "depend on schema(s) t2" in d.schema_reason
    # no relation map (an older snapshot): database level
    relmap.unlink()
    d = selective.decide(snap, meta, ["tenant"], "on", ["t1"], relmap)
    assert d.path == "databases" and "no relation map" in d.to_dict()["schemas_copied_because"]


def test_copy_zero_fills_other_schemas_forks_but_not_init_forks(
    shared_tmp: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(selective, "LEAVE_OUT_BELOW", 0)  # every file made, the small ones too
    snap, _meta = snapshot(shared_tmp, [16384], MAP)
    d = snap / "base" / "16384"
    for name in ("16402_fsm", "16402_vm", "16402.1", "16402_init", "16400_vm", "pg_filenode.map"):
        (d / name).write_bytes(b"\x03" * 8192)
    dst = shared_tmp / "copy"
    counts = selective.copy_snapshot(snap, dst, set(), {16384: {16402, 16400}})
    out = dst / "base" / "16384"
    for name in ("16400", "16402_fsm", "16402_vm", "16402.1", "16400_vm"):
        assert (out / name).stat().st_blocks == 0 and (out / name).stat().st_size > 0, name
    for name in ("16402_init", "pg_filenode.map", "PG_VERSION"):
        assert (out / name).read_bytes() == (d / name).read_bytes(), name
    assert counts["files_zero_filled"] == 5


def test_invalid_page_of_a_kept_relation_fails(tmp_path: Path):
    log = tmp_path / "log"
    ok = "WARNING:  page 3 of relation base/16384/16402 is uninitialized\n"
    log.write_text(ok + "WARNING:  page 0 of relation base/16385/1 does not exist\n")
    check_invalid_pages(log, {16385}, {16384: {16402}})
    log.write_text(ok + "WARNING:  page 1 of relation base/16384/16400 is uninitialized\n")
    with pytest.raises(FleetError, match="16400"):
        check_invalid_pages(log, {16385}, {16384: {16402}})

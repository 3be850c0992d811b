"""Static checks of the restore request: every bad input is refused with a message that names it."""

from datetime import UTC, datetime

import pytest

from restore_assets.core.ddl import default_suffix, target_name
from restore_assets.core.errors import InvalidRequest
from restore_assets.core.request import RestoreRequest

BASE = {"database": "tenant_a", "schemas": ["customer_a1"], "restore_time": "2026-01-02T03:04:05Z"}


def test_parse_normalises_time_to_utc():
    req = RestoreRequest.parse({**BASE, "restore_time": "2026-01-02T04:04:05+01:00"})
    assert req.restore_time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert req.schemas == ("customer_a1",)
    assert req.target.restore_time == req.restore_time


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"restore_time": None}, "exactly one of restore_time or snapshot_id"),
        ({"snapshot_id": "snap-1"}, "exactly one of restore_time or snapshot_id"),
        ({"restore_time": "2026-01-02T03:04:05"}, "has no time zone"),
        ({"restore_time": "yesterday"}, "not an ISO 8601 timestamp"),
        ({"schemas": ["a", "b", "a"]}, "duplicate schema(s) in request: a"),
        ({"schemas": []}, "at least one schema is required"),
        ({"schemas": ["x" * 64]}, "is 64 bytes long"),
        ({"database": ""}, "database name must be a non-empty string"),
        ({"suffix": "y" * 60}, "truncates identifiers to 63 bytes"),
        ({"colour": "blue"}, "unknown key(s) in the restore request: 'colour'"),
        ({"sufix": "x"}, "'sufix' (did you mean 'suffix'?)"),
    ],
)
def test_bad_requests_are_refused_with_their_message(change, message):
    raw = {**BASE, **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(InvalidRequest) as err:
        RestoreRequest.parse(raw)
    assert message in str(err.value)


def test_multibyte_names_count_bytes_not_characters():
    # 21 three-byte characters = 63 bytes: allowed; one more is refused
    RestoreRequest.parse({**BASE, "schemas": ["東" * 21]})
    with pytest.raises(InvalidRequest):
        RestoreRequest.parse({**BASE, "schemas": ["東" * 22]})


def test_default_suffix_and_target_name():
    point = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert default_suffix(point) == "20260102030405"
    assert target_name("customer_a1", "20260102030405") == "customer_a1_20260102030405"


def test_round_trip_to_dict():
    req = RestoreRequest.parse(
        {**BASE, "tables": ["orders"], "include_dependencies": False, "suffix": "x"}
    )
    again = RestoreRequest.parse({k: v for k, v in req.to_dict().items() if v not in (None, [])})
    assert again == req


def test_tablespace_map_is_parsed_and_checked() -> None:
    from restore_assets.core.request import RestoreRequest

    base = {"database": "d", "schemas": ["s"], "snapshot_id": "snap-1"}
    req = RestoreRequest.parse({**base, "tablespace_map": ["ts1=fast", "ts2=pg_default"]})
    assert req.tablespace_map == (("ts1", "fast"), ("ts2", "pg_default"))
    assert req.to_dict()["tablespace_map"] == {"ts1": "fast", "ts2": "pg_default"}
    assert RestoreRequest.parse({**base, "tablespace_map": {"a": "b"}}).tablespace_map == (
        ("a", "b"),
    )
    for bad, message in (
        (["ts1"], "old=new"),
        (["ts1=a", "ts1=b"], "mapped twice"),
        (["=x"], "non-empty"),
        ({"a": "x" * 64}, "63"),
    ):
        with pytest.raises(InvalidRequest, match=message):
            RestoreRequest.parse({**base, "tablespace_map": bad})


def test_the_model_itself_refuses_a_typo_naming_the_nearest_field():
    """Not only parse: building the pydantic model refuses an unknown key (extra="forbid")."""
    with pytest.raises(InvalidRequest, match="'sufix' \\(did you mean 'suffix'\\?\\)"):
        RestoreRequest.model_validate({**BASE, "sufix": "x"})
    assert RestoreRequest.model_config["extra"] == "forbid"
    undescribed = [n for n, f in RestoreRequest.model_fields.items() if not f.description]
    assert undescribed == []

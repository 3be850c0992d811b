"""Binary-or-text decision of the COPY planner, on hand-made type catalogs."""

from __future__ import annotations

from restore_assets.core.mover.plan import FIRST_NORMAL_OBJECT_ID, _text_reason, _TypeInfo

INT4, TEXT, INT4_ARRAY, ACLITEM = 23, 25, 1007, 1033
ENUM = FIRST_NORMAL_OBJECT_ID + 10
ENUM_ARRAY = FIRST_NORMAL_OBJECT_ID + 11
DOMAIN_INT = FIRST_NORMAL_OBJECT_ID + 12
DOMAIN_ENUM = FIRST_NORMAL_OBJECT_ID + 13
DOMAIN_INT_ARRAY = FIRST_NORMAL_OBJECT_ID + 14
COMPOSITE = FIRST_NORMAL_OBJECT_ID + 15


def t(
    oid: int, name: str, typtype: str = "b", *, array_of: int = 0, base: int = 0, io: bool = True
):
    return _TypeInfo(oid, name, typtype, bool(array_of), array_of, base, io)


TYPES = {
    x.oid: x
    for x in [
        t(INT4, "integer"),
        t(TEXT, "text"),
        t(INT4_ARRAY, "integer[]", array_of=INT4),
        t(ACLITEM, "aclitem", io=False),
        t(ENUM, "mood", "e"),
        t(ENUM_ARRAY, "mood[]", array_of=ENUM),
        t(DOMAIN_INT, "posint", "d", base=INT4),
        t(DOMAIN_ENUM, "mood_d", "d", base=ENUM),
        t(DOMAIN_INT_ARRAY, "posint[]", array_of=DOMAIN_INT),
        t(COMPOSITE, "pair", "c"),
    ]
}


def test_builtin_types_and_their_arrays_go_binary() -> None:
    assert _text_reason(INT4, TYPES) is None
    assert _text_reason(TEXT, TYPES) is None
    assert _text_reason(INT4_ARRAY, TYPES) is None


def test_domain_over_builtin_goes_binary() -> None:
    assert _text_reason(DOMAIN_INT, TYPES) is None


def test_user_defined_types_go_text() -> None:
    for oid, word in [
        (ENUM, "mood"),
        (ENUM_ARRAY, "mood"),
        (DOMAIN_ENUM, "mood"),
        (DOMAIN_INT_ARRAY, "posint"),
        (COMPOSITE, "pair"),
    ]:
        reason = _text_reason(oid, TYPES)
        assert reason and word in reason, (oid, reason)


def test_type_without_binary_io_goes_text() -> None:
    reason = _text_reason(ACLITEM, TYPES)
    assert reason and "no binary send/receive" in reason


def test_unknown_type_goes_text() -> None:
    assert _text_reason(999_999, TYPES)

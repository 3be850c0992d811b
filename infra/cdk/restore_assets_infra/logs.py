"""CloudWatch Logs helpers."""

from __future__ import annotations

from aws_cdk import aws_logs as logs

from .config import ConfigError

# Retention periods CloudWatch Logs accepts, in days, and the CDK enum member for each.
_RETENTION_DAYS: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    """The CloudWatch Logs retention for `days`; only the periods the service accepts."""
    try:
        return _RETENTION_DAYS[days]
    except KeyError:
        allowed = ", ".join(str(d) for d in _RETENTION_DAYS)
        raise ConfigError(
            f"context logRetentionDays={days}: CloudWatch Logs accepts {allowed}"
        ) from None

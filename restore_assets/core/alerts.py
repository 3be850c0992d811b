"""Alerts: Slack webhooks, email (SMTP, or SES on AWS) and SNS. Delivery never raises.

Configured from the `alerts:` mapping of the backend configuration:

    alerts:
      slack_webhook_url: https://hooks.slack.com/services/...   # or slack_webhook_url_env: NAME
      smtp: {host: mail, port: 587, from: a@x, to: [b@x], starttls: true,
             username: bot, password_env: SMTP_PASSWORD}
      ses: {from: a@x, to: [b@x], region_name: eu-west-1}
      sns_topic_arn: arn:aws:sns:...
      on_success: false        # failures and rollbacks always alert; successes only when true
      timeout_s: 5

An alert that cannot be delivered is logged (with the webhook path and any password masked) and
never changes the outcome of the run that sent it.

Slack and SMTP channels are built here. SES and SNS go through boto3 clients, which the core does
not make: their channels come from the AWS backend (`restore_assets.backends.aws.alerts`), passed
to `notifier_from_config` as a channel builder.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("restore_assets.core.alerts")

DEFAULT_TIMEOUT = 5.0
ALWAYS = ("failed", "rolled_back", "rollback_failed", "canceled", "rejected")
KNOWN_KEYS = {
    "slack_webhook_url",
    "slack_webhook_url_env",
    "smtp",
    "ses",
    "sns_topic_arn",
    "sns_region_name",
    "on_success",
    "timeout_s",
}


def mask_url(url: str) -> str:
    """A URL with its path and query hidden (a Slack webhook's path is its secret)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if not parts.scheme or not parts.netloc:
        return "***"
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/***"


def format_event(event: Mapping[str, Any]) -> tuple[str, str]:
    """Subject line and text body of one event."""
    kind = event.get("kind") or event.get("job") or "restore-assets"
    status = str(event.get("status") or "unknown")
    what = event.get("identifier") or event.get("restore_id") or event.get("run_id") or ""
    subject = f"[restore-assets] {kind} {status.upper().replace('_', ' ')}" + (
        f" ({what})" if what else ""
    )
    lines = [subject]
    for key in ("restore_id", "identifier", "job", "run_id", "cause", "url"):
        if event.get(key):
            lines.append(f"{key}: {event[key]}")
    return subject, "\n".join(lines)


class Channel:
    """One place alerts go to."""

    name = "channel"

    def describe(self) -> str:
        """Where this channel delivers, with secrets masked."""
        return self.name

    def secrets(self) -> list[str]:
        """Strings that must never appear in a log line."""
        return []

    def deliver(self, subject: str, text: str, event: Mapping[str, Any]) -> None:
        """Send one alert (may raise: the Notifier catches and logs)."""
        raise NotImplementedError


# makes the channels of one kind from the `alerts:` mapping and the time limit (never raises)
ChannelBuilder = Callable[[Mapping[str, Any], float], list[Channel]]


@dataclass
class SlackChannel(Channel):
    """A Slack incoming webhook: HTTP POST of {"text": ...} as JSON."""

    url: str = field(repr=False)  # the path is the secret: never in a repr
    timeout: float = DEFAULT_TIMEOUT
    name: str = "slack"

    def describe(self) -> str:
        """The webhook with its path masked."""
        return f"slack {mask_url(self.url)}"

    def secrets(self) -> list[str]:
        """The webhook URL and its path."""
        path = urlsplit(self.url).path
        return [self.url] + ([path] if len(path) > 1 else [])

    def deliver(self, subject: str, text: str, event: Mapping[str, Any]) -> None:
        """POST the message; a non-2xx answer raises."""
        body = json.dumps({"text": text}).encode()
        req = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - https/http
            if not 200 <= resp.status < 300:
                raise RuntimeError(f"webhook answered HTTP {resp.status}")


@dataclass
class SmtpChannel(Channel):
    """Email through an SMTP server (STARTTLS and login optional; password from an env var)."""

    host: str
    port: int
    sender: str
    to: list[str]
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    name: str = "smtp"

    @classmethod
    def from_settings(cls, smtp: Mapping[str, Any], timeout: float) -> SmtpChannel:
        """The channel of an `alerts.smtp` mapping (host, from and to required)."""
        return cls(
            host=str(smtp["host"]),
            port=int(smtp.get("port", 25)),
            sender=str(smtp["from"]),
            to=recipients(smtp["to"]),
            starttls=bool(smtp.get("starttls", False)),
            username=smtp.get("username"),
            password_env=smtp.get("password_env"),
            timeout=timeout,
        )

    def describe(self) -> str:
        """Server and recipients."""
        return f"smtp {self.host}:{self.port} -> {', '.join(self.to)}"

    def _password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None

    def secrets(self) -> list[str]:
        """The SMTP password."""
        pw = self._password()
        return [pw] if pw else []

    def deliver(self, subject: str, text: str, event: Mapping[str, Any]) -> None:
        """Send one message."""
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg.set_content(text)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                password = self._password()
                if password is None:
                    raise RuntimeError(f"SMTP password variable {self.password_env!r} is not set")
                smtp.login(self.username, password)
            smtp.send_message(msg)


def scrub(text: str, secrets: list[str]) -> str:
    """Text with every secret (and anything URL-like holding one) replaced by ***."""
    for s in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(s, "***")
    return text


@dataclass
class AlertNotifier:
    """Sends an event to every channel; failures and rollbacks always, successes when on_success."""

    channels: list[Channel] = field(default_factory=list)
    on_success: bool = False

    def wants(self, event: Mapping[str, Any]) -> bool:
        """True when the event's status is alerted on."""
        status = str(event.get("status") or "")
        return status in ALWAYS or (self.on_success and status == "succeeded")

    def send(self, event: Mapping[str, Any]) -> dict[str, str]:
        """Deliver one event to every channel; return each channel's outcome. Never raises."""
        out: dict[str, str] = {}
        try:
            if not self.wants(event):
                return {c.name: "skipped" for c in self.channels}
            subject, text = format_event(event)
        except Exception as exc:  # noqa: BLE001 - an alert never fails its run
            log.error("alert not formatted: %s", type(exc).__name__)
            return {c.name: "failed" for c in self.channels}
        for channel in self.channels:
            try:
                channel.deliver(subject, text, event)
                out[channel.name] = "sent"
                log.info("alert sent via %s: %s", channel.describe(), subject)
            except Exception as exc:  # noqa: BLE001 - logged, never raised
                try:
                    secrets = channel.secrets()
                    where = channel.describe()
                except Exception:  # noqa: BLE001
                    secrets, where = [], channel.name
                reason = scrub(f"{type(exc).__name__}: {exc}", secrets)
                out[channel.name] = f"failed: {reason}"
                log.warning("alert via %s not delivered: %s", where, reason)
        return out


def recipients(value: Any) -> list[str]:
    """Addresses from a list or a comma-separated string."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value or []]


def built(
    alerts: Mapping[str, Any],
    section: str,
    needs: str,
    make: Callable[[Mapping[str, Any]], Channel],
) -> list[Channel]:
    """[make(alerts[section])]; [] when it is not set, or with a malformed one logged (never raised)."""
    settings = alerts.get(section)
    if not settings:
        return []
    try:
        return [make(settings)]
    except (KeyError, TypeError, ValueError) as exc:
        log.error("alerts.%s needs %s (%s missing or invalid): left out", section, needs, exc)
        return []


def notifier_from_config(
    alerts: Mapping[str, Any] | None, *builders: ChannelBuilder
) -> AlertNotifier | None:
    """An AlertNotifier from the `alerts:` mapping (None when no channel is configured): Slack and
    SMTP, plus the channels each builder makes of the mapping (SES and SNS: the AWS backend's).

    A malformed entry is logged and left out; it never raises.
    """
    if not alerts:
        return None
    if not isinstance(alerts, Mapping):
        log.error("alerts configuration must be a mapping: alerts disabled")
        return None
    unknown = sorted(set(alerts) - KNOWN_KEYS)
    if unknown:
        log.warning("unknown alerts setting(s) ignored: %s", ", ".join(unknown))
    timeout = float(alerts.get("timeout_s") or DEFAULT_TIMEOUT)
    channels: list[Channel] = []
    url = alerts.get("slack_webhook_url")
    if not url and alerts.get("slack_webhook_url_env"):
        url = os.environ.get(str(alerts["slack_webhook_url_env"]))
        if not url:
            log.error("alerts: %s is not set: no Slack alerts", alerts["slack_webhook_url_env"])
    if url:
        channels.append(SlackChannel(str(url), timeout))
    channels += built(
        alerts, "smtp", "host, from and to", lambda smtp: SmtpChannel.from_settings(smtp, timeout)
    )
    for build in builders:
        try:
            channels.extend(build(alerts, timeout))
        except Exception as exc:  # noqa: BLE001 - alerts never fail their caller
            log.error("alerts: channels not built (%s): left out", type(exc).__name__)
    if not builders and (alerts.get("ses") or alerts.get("sns_topic_arn")):
        log.error("alerts.ses and alerts.sns_topic_arn need the AWS backend's channels: not sent")
    if not channels:
        return None
    return AlertNotifier(channels, on_success=bool(alerts.get("on_success", False)))

"""The alert notifier: Slack webhook (local HTTP server), SMTP (aiosmtpd), never raising, no secrets."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from restore_assets.core.alerts import (
    AlertNotifier,
    SlackChannel,
    format_event,
    mask_url,
    notifier_from_config,
)

FAILED = {"kind": "instance_restore", "status": "failed", "restore_id": "r-1", "cause": "boom"}
WEBHOOK_PATH = "/services/T0000/B0000/s3cr3tT0ken"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SlackStandIn:
    """A local HTTP server standing in for a Slack incoming webhook."""

    port: int
    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The webhook URL (its path is the secret)."""
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"


@contextmanager
def slack_stand_in(status: int = 200) -> Iterator[SlackStandIn]:
    """Serve a fake Slack webhook on a free port in a thread."""
    server_state = SlackStandIn(0, status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            server_state.paths.append(self.path)
            server_state.received.append(json.loads(body))
            self.send_response(server_state.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def smtp_stand_in() -> Iterator[tuple[int, list[Any]]]:
    """An aiosmtpd server on a free port collecting the messages it receives."""
    from aiosmtpd.controller import Controller

    messages: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            messages.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, messages
    finally:
        controller.stop()


def test_slack_webhook_receives_the_failure() -> None:
    with slack_stand_in() as slack:
        notifier = notifier_from_config({"slack_webhook_url": slack.url})
        assert notifier is not None
        out = notifier.send(FAILED)
    assert out == {"slack": "sent"}
    assert slack.paths == [WEBHOOK_PATH]
    text = slack.received[0]["text"]
    assert "instance_restore FAILED" in text and "cause: boom" in text


def test_email_through_smtp_with_a_password_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "pw-never-logged")
    with smtp_stand_in() as (port, messages):
        notifier = notifier_from_config(
            {
                "smtp": {
                    "host": "127.0.0.1",
                    "port": port,
                    "from": "restore@example.com",
                    "to": "ops@example.com, dba@example.com",
                }
            }
        )
        assert notifier is not None
        assert notifier.send(FAILED) == {"smtp": "sent"}
    [env] = messages
    assert env.mail_from == "restore@example.com"
    assert env.rcpt_tos == ["ops@example.com", "dba@example.com"]
    assert b"Subject: [restore-assets] instance_restore FAILED" in env.content


def test_unreachable_channels_never_raise_and_never_log_secrets(monkeypatch, caplog) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "pw-never-logged")
    dead = free_port()
    notifier = notifier_from_config(
        {
            "slack_webhook_url": f"http://127.0.0.1:{dead}{WEBHOOK_PATH}",
            "smtp": {
                "host": "127.0.0.1",
                "port": dead,
                "from": "a@example.com",
                "to": ["b@example.com"],
                "username": "bot",
                "password_env": "TEST_SMTP_PASSWORD",
            },
            "timeout_s": 1,
        }
    )
    assert notifier is not None
    with caplog.at_level(logging.DEBUG, logger="restore_assets.core.alerts"):
        out = notifier.send(FAILED)
    assert out["slack"].startswith("failed") and out["smtp"].startswith("failed")
    logged = caplog.text + json.dumps(out)
    assert "s3cr3tT0ken" not in logged and "/services/" not in logged
    assert "pw-never-logged" not in logged
    assert f"http://127.0.0.1:{dead}/***" in caplog.text
    assert "s3cr3tT0ken" not in repr(notifier)


def test_a_webhook_answering_an_error_is_logged_not_raised(caplog) -> None:
    with slack_stand_in(status=500) as slack:
        notifier = AlertNotifier([SlackChannel(slack.url)])
        out = notifier.send(FAILED)
    assert out["slack"].startswith("failed") and "500" in out["slack"]
    assert "s3cr3tT0ken" not in caplog.text


def test_successes_alert_only_when_on_success() -> None:
    ok = {"kind": "snapshot", "status": "succeeded", "restore_id": "s-1"}
    with slack_stand_in() as slack:
        quiet = notifier_from_config({"slack_webhook_url": slack.url})
        loud = notifier_from_config({"slack_webhook_url": slack.url, "on_success": True})
        assert quiet is not None and loud is not None
        assert quiet.send(ok) == {"slack": "skipped"}
        assert loud.send(ok) == {"slack": "sent"}
        assert quiet.send({**ok, "status": "rolled_back"}) == {"slack": "sent"}
    assert len(slack.received) == 2


def test_configuration_edge_cases(monkeypatch, caplog) -> None:
    assert notifier_from_config(None) is None
    assert notifier_from_config({"on_success": True}) is None
    # SES and SNS need the AWS backend's channel builder: without it they are logged, not sent
    assert notifier_from_config({"sns_topic_arn": "arn:aws:sns:us-east-1:1:t"}) is None
    assert "need the AWS backend's channels" in caplog.text
    # a bad entry is logged and left out, never raised
    assert notifier_from_config({"smtp": {"port": 25}}) is None
    assert "alerts.smtp needs host" in caplog.text
    monkeypatch.setenv("HOOK_URL", "https://hooks.slack.com/services/T/B/x")
    n = notifier_from_config({"slack_webhook_url_env": "HOOK_URL"})
    assert n is not None and n.channels[0].describe() == "slack https://hooks.slack.com/***"
    assert mask_url("not a url") == "***"
    subject, _ = format_event({"kind": "snapshot", "status": "rolled_back", "identifier": "db1"})
    assert subject == "[restore-assets] snapshot ROLLED BACK (db1)"


@pytest.mark.parametrize("event", [None, 42, {"status": object()}])
def test_malformed_events_do_not_raise(event: Any) -> None:
    notifier = AlertNotifier([SlackChannel("http://127.0.0.1:9/x")])
    assert isinstance(notifier.send(event), dict)  # type: ignore[arg-type]

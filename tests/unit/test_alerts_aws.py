"""Alerts through SES and SNS (moto): delivered when configured, never raising when not."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from restore_assets.backends.aws.alerts import notifier_from_settings

REGION = "us-east-1"
FAILED = {"kind": "snapshot", "status": "failed", "restore_id": "s-1", "cause": "quota"}


@pytest.fixture
def aws():
    with mock_aws():
        yield


def test_ses_and_sns_receive_the_alert(aws) -> None:
    ses = boto3.client("ses", region_name=REGION)
    ses.verify_email_identity(EmailAddress="restore@example.com")
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="restore-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    notifier = notifier_from_settings(
        {
            "aws": {"region_name": REGION},
            "alerts": {
                "ses": {"from": "restore@example.com", "to": ["ops@example.com"]},
                "sns_topic_arn": topic,
            },
        }
    )
    assert notifier is not None
    assert notifier.send(FAILED) == {"ses": "sent", "sns": "sent"}
    assert ses.get_send_statistics()["SendDataPoints"][0]["DeliveryAttempts"] == 1
    [msg] = sqs.receive_message(QueueUrl=queue)["Messages"]
    body = json.loads(msg["Body"])
    assert body["Subject"] == "[restore-assets] snapshot FAILED (s-1)"
    assert "cause: quota" in body["Message"]


def test_an_unverified_sender_or_missing_topic_is_logged_not_raised(aws, caplog) -> None:
    notifier = notifier_from_settings(
        {
            "alerts": {
                "ses": {
                    "from": "nobody@example.com",
                    "to": "ops@example.com",
                    "region_name": REGION,
                },
                "sns_topic_arn": f"arn:aws:sns:{REGION}:123456789012:missing",
            }
        }
    )
    assert notifier is not None
    out = notifier.send(FAILED)
    assert out["ses"].startswith("failed") and out["sns"].startswith("failed")
    assert "not delivered" in caplog.text


def test_a_configuration_without_alerts_has_no_notifier() -> None:
    assert notifier_from_settings({"backend": "local"}) is None
    assert notifier_from_settings({"backend": "aws", "aws": {"region_name": REGION}}) is None


def test_a_malformed_ses_entry_is_logged_and_left_out(caplog) -> None:
    assert notifier_from_settings({"alerts": {"ses": {"from": "restore@example.com"}}}) is None
    assert "alerts.ses needs from and to" in caplog.text

"""Alerts through SES (email) and SNS, with clients from the backend's one session path.

The core (`restore_assets.core.alerts`) builds Slack and SMTP channels and takes these as a
channel builder; `notifier_from_settings` is the notifier of a whole backend configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.config import Config

from restore_assets.backends.aws.clients import aws_client, retry_config
from restore_assets.core.alerts import (
    DEFAULT_TIMEOUT,
    AlertNotifier,
    Channel,
    ChannelBuilder,
    built,
    notifier_from_config,
    recipients,
)


def alert_client(service: str, region: str | None, timeout: float) -> Any:
    """A client for one alert: short time limits and one retry (an alert must not hold a run)."""
    config = retry_config(1).merge(Config(connect_timeout=timeout, read_timeout=timeout))
    return aws_client(service, region_name=region, config=config)


@dataclass(kw_only=True)
class AwsChannel(Channel):
    """A channel through one AWS service's boto3 client (region, time limit, client factory)."""

    region: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    client_factory: Callable[[str, str | None, float], Any] = alert_client

    def client(self, service: str, region: str | None = None) -> Any:
        """The boto3 client of a service in this channel's region (or the one given)."""
        return self.client_factory(service, region or self.region, self.timeout)


@dataclass
class SesChannel(AwsChannel):
    """Email through Amazon SES (boto3 send_email)."""

    sender: str
    to: list[str]
    name: str = "ses"

    @classmethod
    def from_settings(
        cls, ses: Mapping[str, Any], timeout: float, region: str | None
    ) -> SesChannel:
        """The channel of an `alerts.ses` mapping (from and to required; its region, else region)."""
        return cls(
            sender=str(ses["from"]),
            to=recipients(ses["to"]),
            region=ses.get("region_name") or region,
            timeout=timeout,
        )

    def describe(self) -> str:
        """Sender and recipients."""
        return f"ses {self.sender} -> {', '.join(self.to)}"

    def deliver(self, subject: str, text: str, event: Mapping[str, Any]) -> None:
        """send_email with a text body."""
        self.client("ses").send_email(
            Source=self.sender,
            Destination={"ToAddresses": list(self.to)},
            Message={"Subject": {"Data": subject}, "Body": {"Text": {"Data": text}}},
        )


@dataclass
class SnsChannel(AwsChannel):
    """An SNS topic (boto3 publish)."""

    topic_arn: str
    name: str = "sns"

    def describe(self) -> str:
        """The topic."""
        return f"sns {self.topic_arn}"

    def deliver(self, subject: str, text: str, event: Mapping[str, Any]) -> None:
        """publish (the subject is cut to SNS's 100 characters)."""
        region = self.region or (
            self.topic_arn.split(":")[3] if self.topic_arn.count(":") >= 5 else None
        )
        self.client("sns", region).publish(
            TopicArn=self.topic_arn,
            Subject=subject[:100],
            Message=text,
            MessageAttributes={
                "status": {"DataType": "String", "StringValue": str(event.get("status", ""))}
            },
        )


def aws_channels(region: str | None = None) -> ChannelBuilder:
    """The builder of the SES and SNS channels of an `alerts:` mapping (default region given)."""

    def build(alerts: Mapping[str, Any], timeout: float) -> list[Channel]:
        channels = built(
            alerts, "ses", "from and to", lambda ses: SesChannel.from_settings(ses, timeout, region)
        )
        if alerts.get("sns_topic_arn"):
            channels.append(
                SnsChannel(
                    topic_arn=str(alerts["sns_topic_arn"]),
                    region=alerts.get("sns_region_name") or region,
                    timeout=timeout,
                )
            )
        return channels

    return build


def notifier_from_settings(settings: Mapping[str, Any]) -> AlertNotifier | None:
    """The notifier of a backend configuration mapping (its `alerts:` section): Slack, SMTP, SES
    and SNS, the AWS clients in `aws.region_name` unless a channel names its own region."""
    if not isinstance(settings, Mapping):
        return None
    region = (settings.get("aws") or {}).get("region_name")
    return notifier_from_config(settings.get("alerts"), aws_channels(region))

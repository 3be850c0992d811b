"""Launchpad configuration that refuses unknown keys, naming each with the nearest valid key."""

from collections.abc import Callable
from typing import Any

import dagster as dg
from pydantic import ConfigDict

from restore_assets.core.keys import unknown_keys_message


class StrictConfig(dg.Config):
    """A Dagster Config whose model refuses unknown keys (pydantic `extra="forbid"`)."""

    model_config = ConfigDict(extra="forbid")


def strict_config_mapping(
    config_cls: type[dg.Config],
) -> Callable[[Callable[[dict[str, Any]], dict[str, Any]]], dg.ConfigMapping]:
    """Like `dg.config_mapping(config_schema=config_cls.to_config_schema())`, but an unknown key is
    refused with the nearest valid key named (Dagster's own message lists the fields, no hint)."""
    fields = config_cls.to_config_schema().as_field().config_type.fields

    def decorate(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> dg.ConfigMapping:
        def mapped(val: dict[str, Any]) -> dict[str, Any]:
            message = unknown_keys_message(f"the {config_cls.__name__} config", val, fields)
            if message:
                raise dg.DagsterInvalidConfigError(message, [], val)
            return fn(val)

        # Permissive: the unknown key reaches `mapped`, which names the nearest valid one
        mapped.__doc__ = fn.__doc__
        return dg.ConfigMapping(config_fn=mapped, config_schema=dg.Permissive(fields))

    return decorate

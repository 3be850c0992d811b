"""Launchpad configuration that refuses unknown keys, naming each with the nearest valid key."""

import types
import typing
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import dagster as dg
import pydantic
from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticUndefined

from restore_assets.core.errors import InvalidRequest
from restore_assets.core.keys import unknown_keys_message


class StrictConfig(dg.Config):
    """A Dagster Config whose model refuses unknown keys (pydantic `extra="forbid"`)."""

    model_config = ConfigDict(extra="forbid")


def _launchpad_type(annotation: Any) -> tuple[Any, Any]:
    """The type a launchpad field of a core field takes, and its empty value (Dagster config knows
    no datetime or tuple: a time is typed as ISO 8601 text, a tuple as a list of strings)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is tuple:
        return list[str], []
    if annotation in (str, datetime):
        return str, ""
    return annotation, None


def launchpad_form(
    model: type[BaseModel],
    *,
    exclude: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> type[StrictConfig]:
    """A StrictConfig with the fields of a core request model: same names, descriptions and defaults
    (empty where the core has none), checked by the core model when the op runs."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name in exclude:
            continue
        kind, empty = _launchpad_type(info.annotation)
        default = info.default
        if default is PydanticUndefined or default is None or isinstance(default, tuple):
            default = empty
        default = (defaults or {}).get(name, default)
        fields[name] = (kind, pydantic.Field(default=default, description=info.description))
    return pydantic.create_model(  # type: ignore[call-overload]
        f"{model.__name__}Form", __base__=StrictConfig, __module__=__name__, **fields
    )


REFUSED_BEFORE_RUN = "Request refused before a run exists"
# the loggers of a mapped run config: the launchpad runs log at INFO
INFO_CONSOLE = {"console": {"config": {"log_level": "INFO"}}}


def strict_config_mapping(
    config_cls: type[dg.Config],
    check: Callable[[dict[str, Any]], object] | None = None,
) -> Callable[[Callable[[dict[str, Any]], dict[str, Any]]], dg.ConfigMapping]:
    """Like `dg.config_mapping(config_schema=config_cls.to_config_schema())`, but an unknown key is
    refused with the nearest valid key named (Dagster's own message lists the fields, no hint).

    `check` (the core model's static checks, no server) raising InvalidRequest refuses the config
    too. Dagster runs the mapping when it builds the plan, before it creates the run: a launchpad
    launch is refused with no run (the launchpad shows the message in its error dialog)."""
    fields = config_cls.to_config_schema().as_field().config_type.fields

    def decorate(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> dg.ConfigMapping:
        def mapped(val: dict[str, Any]) -> dict[str, Any]:
            message = unknown_keys_message(f"the {config_cls.__name__} config", val, fields)
            if message:
                raise dg.DagsterInvalidConfigError(message, [], val)
            if check is not None:
                try:
                    check(val)
                except InvalidRequest as exc:
                    raise dg.DagsterInvalidConfigError(
                        f"{REFUSED_BEFORE_RUN}: {exc}", [], val
                    ) from None
            return fn(val)

        # Permissive: the unknown key reaches `mapped`, which names the nearest valid one
        mapped.__doc__ = fn.__doc__
        return dg.ConfigMapping(config_fn=mapped, config_schema=dg.Permissive(fields))

    return decorate

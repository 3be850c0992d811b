"""Thin ops made from a plain function of the core's (services, restore id, plan, upstream results),
and how an op reports the PhaseResult it returns.

The op is named and described after the function. Its signature is that of a hand-written op,
`(context, run, <the function's parameters after the first three>, backend)`: Dagster reads the
inputs (names, types, position in a graph call) from it; the job module says how the function is
run (`run_body`).
"""

import inspect
from collections.abc import Callable
from typing import Any

import dagster as dg

from restore_assets.core.runner import PhaseResult
from restore_assets.jobs.resources import RestoreBackend

RunBody = Callable[[dg.OpExecutionContext, RestoreBackend, dict, dict[str, Any]], PhaseResult]


def _param(name: str, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation)


def thin_op(body: Callable[..., Any], run_body: RunBody) -> dg.OpDefinition:
    """The op of `body`: `run_body(context, backend, run, inputs)`, its upstream inputs by name."""
    upstream = list(inspect.signature(body).parameters.values())[3:]

    def compute(
        context: dg.OpExecutionContext, run: dict, backend: RestoreBackend, **inputs: Any
    ) -> PhaseResult:
        return run_body(context, backend, run, inputs)

    compute.__name__, compute.__doc__ = body.__name__, body.__doc__
    compute.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            _param("context", dg.OpExecutionContext),
            _param("run", dict),
            *upstream,
            _param("backend", RestoreBackend),
        ],
        return_annotation=PhaseResult,
    )
    return dg.op(out=dg.Out(PhaseResult))(compute)


def results_of(inputs: dict[str, Any]) -> list[PhaseResult]:
    """The upstream results of an op's inputs, in order (a list input, the fan-in, flattened)."""
    return [r for value in inputs.values() for r in (value if isinstance(value, list) else [value])]


def report_result(context: dg.OpExecutionContext, result: PhaseResult, kind: str) -> PhaseResult:
    """Log the outcome of a `kind` ("phase", "step") and attach its metadata to the op's output."""
    name = f"{kind} {result.phase}"
    if result.metadata.get("not_requested"):
        context.log.info(f"{name}: not part of this task")
    elif result.ok:
        context.log.info(f"{name} done in {result.seconds}s")
    elif result.skipped:
        context.log.warning(f"{name} skipped: an earlier {kind} failed")
    else:
        context.log.error(f"{name} failed: {result.error}")
    meta: dict[str, Any] = {"ok": result.ok, "seconds": result.seconds}
    if result.error:
        meta["error"] = result.error
    if result.skipped:
        meta["skipped"] = True
    for k, v in result.metadata.items():
        meta[k] = dg.MetadataValue.json(v) if isinstance(v, dict | list) else v
    context.add_output_metadata(meta)
    return result

"""Dagster job graphs: no step sits two hops past a dynamic collect without consuming it.

Dagster builds a run's plan in the order of its step selection and marks a step "unresolved" (to be
planned once the dynamic outputs are known) only if it has already marked the step it depends on.
A step two or more hops downstream of a `.collect()` is therefore planned as ready-to-wait whenever a
re-execution's selection lists it before its upstream: the run then spins on it at full CPU (a refused
re-execution of `schema_restore` took ten minutes instead of seconds). A step that consumes the
collect itself is always unresolved, whatever the order.
"""

from __future__ import annotations

import dagster as dg
import pytest

from restore_assets.jobs.definitions import defs


def late_steps(graph: dg.GraphDefinition) -> list[str]:
    """Nodes two or more hops past a dynamic collect that do not consume a collect themselves."""
    deps = graph.dependency_structure
    upstream: dict[str, set[str]] = {}
    consumers: set[str] = set()
    for node in graph.nodes:
        upstream[node.name] = set()
        for input_def in node.definition.input_defs:
            handle = node.get_input(input_def.name)
            if deps.has_dynamic_fan_in_dep(handle):
                consumers.add(node.name)
            if deps.has_deps(handle):
                upstream[node.name] |= {o.node_name for o in deps.get_deps_list(handle)}
    after: set[str] = set()  # downstream of a collect, not consuming one
    changed = True
    while changed:
        changed = False
        for name, ups in upstream.items():
            if name not in consumers and name not in after and ups & (consumers | after):
                after.add(name)
                changed = True
    return sorted(n for n in after if upstream[n] & after)


def jobs() -> list[dg.JobDefinition]:
    """Every job the code location defines."""
    repo = defs.get_repository_def()
    return [j for j in repo.get_all_jobs() if not j.name.startswith("__")]


@pytest.mark.parametrize("job", jobs(), ids=lambda j: j.name)
def test_no_step_waits_two_hops_past_a_dynamic_collect(job: dg.JobDefinition) -> None:
    assert late_steps(job.graph) == []


def test_the_check_finds_a_step_two_hops_past_a_collect() -> None:
    @dg.op(out=dg.DynamicOut(int))
    def fan_out():
        yield dg.DynamicOutput(1, mapping_key="a")

    @dg.op
    def work(x: int) -> int:
        return x

    @dg.op
    def gather(xs: list) -> int:
        return len(xs)

    @dg.op
    def answer(n: int) -> int:
        return n

    @dg.op
    def release(n: int) -> None:
        return None

    @dg.op
    def release_consuming(n: int, xs: list) -> None:
        return None

    @dg.job
    def late() -> None:
        release(answer(gather(fan_out().map(work).collect())))

    @dg.job
    def fixed() -> None:
        copies = fan_out().map(work).collect()
        release_consuming(answer(gather(copies)), copies)

    assert late_steps(late.graph) == ["release"]
    assert late_steps(fixed.graph) == []

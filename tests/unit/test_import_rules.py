"""The import rules of docs/ARCHITECTURE.md, checked with `ast` over every source file.

Every import counts, also one inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "restore_assets"
SOURCE = Path(__file__).resolve().parents[2] / PACKAGE

DAGSTER_ROOTS = ("dagster", "dagster_aws")  # and every other dagster_* distribution
# dagster_pipes is the protocol library an external process (the ECS task) speaks, not Dagster
PIPES_ONLY = {"restore_assets.backends.aws.task_entrypoint": "dagster_pipes"}
# Dagster adapters: the only modules that may import Dagster (definitions.py is jobs/definitions.py)
ADAPTERS = ("restore_assets.jobs",)
# interfaces: the command line, the launcher the CLI and runbook notebooks call, the report server
# and the demo (notebooks.py, which renders the report notebooks with papermill, is a core service)
INTERFACES = (
    "restore_assets.cli",
    "restore_assets.jobs.launch",
    "restore_assets.demo",
)
# the interfaces proper: the adapter's jobs never import these
USER_FACING = ("restore_assets.cli", "restore_assets.demo")
LOCAL = "restore_assets.backends.local"
AWS = "restore_assets.backends.aws"
CORE = "restore_assets.core"
BACKENDS = "restore_assets.backends"
# the one backend module the core may import: the protocols its phases are written against
PROTOCOLS = "restore_assets.backends.protocols"


@dataclass(frozen=True)
class Import:
    """One import statement: the importing module, the imported module, the line."""

    module: str
    target: str
    line: int


def module_name(path: Path, root: Path) -> str:
    """The dotted module name of a source file under root (root's name is the package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every import of one file (top level and inside functions), relative ones resolved."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import mod` imports pkg.mod when mod is a module: count both
            found.append(Import(module, target, node.lineno))
            found += [Import(module, f"{target}.{a.name}", node.lineno) for a in node.names]
    return found


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _is_dagster(target: str) -> bool:
    top = target.split(".")[0]
    return top in DAGSTER_ROOTS or top.startswith("dagster_")


def _is_interface(name: str) -> bool:
    return any(_under(name, p) or (p.endswith("_") and name.startswith(p)) for p in INTERFACES)


def rule_breaks(imp: Import) -> list[str]:
    """The rules one import breaks (an empty list when it keeps them all)."""
    m, t = imp.module, imp.target
    broken: list[str] = []
    adapter = any(_under(m, a) for a in ADAPTERS)
    if _is_dagster(t) and not adapter and PIPES_ONLY.get(m) != t.split(".")[0]:
        broken.append("only jobs/ imports Dagster")
    if not adapter and not _is_interface(m):  # core and backends
        if any(_under(t, a) for a in ADAPTERS) or _is_interface(t):
            broken.append("core and backends import no adapter (jobs/) and no interface (CLI)")
    if adapter and not _is_interface(m) and any(_under(t, i) for i in USER_FACING):
        broken.append("jobs/ imports no interface (cli/, demo/)")
    if (_under(m, LOCAL) and _under(t, AWS)) or (_under(m, AWS) and _under(t, LOCAL)):
        broken.append("backends/local and backends/aws do not import each other")
    # `from restore_assets.backends import protocols` also names the bare package: not a backend
    if _under(m, CORE) and _under(t, BACKENDS) and t != BACKENDS and not _under(t, PROTOCOLS):
        broken.append("the core imports no backend except backends/protocols")
    return broken


def violations(root: Path) -> list[str]:
    """Every broken rule under a package directory, as 'file:line module -> target: rule'."""
    out: list[str] = []
    for path in sorted(root.rglob("*.py")):
        for imp in imports_of(path, root):
            for rule in rule_breaks(imp):
                rel = path.relative_to(root.parent)
                out.append(f"{rel}:{imp.line} {imp.module} -> {imp.target}: {rule}")
    return sorted(set(out))


def test_source_tree_keeps_the_import_rules() -> None:
    """restore_assets/ as it is: no rule broken."""
    assert SOURCE.is_dir()
    assert len(list(SOURCE.rglob("*.py"))) > 50  # the real tree, not an empty glob
    assert violations(SOURCE) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / PACKAGE
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    return root


@pytest.mark.parametrize(
    ("rel", "text", "rule"),
    [
        (
            "core/schema_restore/phases.py",
            "def f():\n    import dagster as dg\n",
            "only jobs/ imports Dagster",
        ),
        ("core/compare/x.py", "from dagster_aws.pipes import PipesECSClient\n", "only jobs/"),
        ("backends/aws/r.py", "import dagster_pipes\n", "only jobs/"),
        ("backends/local/f.py", "from ..aws import fleet\n", "do not import each other"),
        ("backends/aws/f.py", "from restore_assets.backends.local import pg\n", "each other"),
        (
            "jobs/report_asset.py",
            "from restore_assets.cli.common import emit\n",
            "no interface (cli/",
        ),
        (
            "core/ddl/extract.py",
            "from restore_assets.backends.local.pg import pg_bin\n",
            "the core imports no backend except backends/protocols",
        ),
        ("core/ddl/x.py", "from ...backends import factory\n", "the core imports no backend"),
        (
            "core/schema_restore/release.py",
            "def f():\n    from restore_assets.backends.factory import build_services\n",
            "the core imports no backend",
        ),
        ("core/audit.py", "import restore_assets.backends.aws.audit\n", "the core imports no"),
        ("core/request.py", "from restore_assets.jobs.tags import T\n", "no adapter"),
        ("backends/aws/e.py", "def f():\n    from restore_assets.cli import aws\n", "no adapter"),
    ],
)
def test_checker_reports_a_broken_rule(tmp_path: Path, rel: str, text: str, rule: str) -> None:
    """A synthetic package with one forbidden import: the checker names the file and the rule."""
    root = _tree(tmp_path, {rel: text})
    found = violations(root)
    assert len(found) >= 1
    assert all(f.startswith(f"{PACKAGE}/{rel}:") for f in found)
    assert any(rule in f for f in found)


def test_checker_accepts_allowed_imports(tmp_path: Path) -> None:
    """Adapters import Dagster and the core; interfaces import jobs; the core imports protocols."""
    root = _tree(
        tmp_path,
        {
            "jobs/ops.py": "import dagster as dg\nfrom restore_assets.core import runner\n",
            "jobs/definitions.py": "from dagster_aws.pipes import PipesECSClient\n",
            "cli/main.py": "from restore_assets.jobs import ops\nfrom restore_assets.jobs import launch\n",
            "jobs/launch.py": "def f():\n    from restore_assets.jobs.ops import x\n",
            "core/runner.py": "from restore_assets.backends.protocols import Fleet\n",
            "core/request.py": "from restore_assets.backends import protocols\n",
            "core/ddl/extract.py": "from restore_assets.core.pgtools import pg_bin\n",
            "backends/factory.py": "def f():\n    from .local import fleet\n    from .aws import fleet\n",
            "backends/local/__init__.py": "from restore_assets.backends.factory import default_root\n",
            "backends/aws/task_entrypoint.py": "from dagster_pipes import open_dagster_pipes\n",
        },
    )
    assert violations(root) == []

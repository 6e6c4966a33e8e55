"""The code style gates run with the tests, so CI enforces them."""

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True)


def test_ruff_lint_and_format() -> None:
    lint = run("ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout
    fmt = run("ruff", "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout


def test_mypy_strict() -> None:
    r = run("mypy")
    assert r.returncode == 0, r.stdout


def _canonical(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _third_party_imports() -> set[str]:
    own = {"harness", "runners", "reports", "hydra_plugins"}
    found = set()
    for package in ("harness", "runners", "reports"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.split(".")[0])
    return found - own - set(sys.stdlib_module_names) - {"__future__"}


def test_type_checking_does_not_depend_on_which_extras_are_installed() -> None:
    """Every third-party module the code imports is a core dependency, or one the mypy
    overrides type as Any whether installed or not: so `mypy` (strict) answers the same with
    the core install and with every extra."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    core = {_canonical(re.split(r"[<>=!~\[ ]", d)[0]) for d in config["project"]["dependencies"]}
    as_any = {m.split(".")[0] for o in config["tool"]["mypy"]["overrides"] for m in o["module"]}
    dists = packages_distributions()
    undeclared = [
        name
        for name in sorted(_third_party_imports())
        if name not in as_any and not any(_canonical(d) in core for d in dists.get(name, []))
    ]
    assert undeclared == []


def test_layers_contract() -> None:
    """pyproject's [tool.importlinter] contracts: each stage imports only the stages below it,
    no import cycle, nothing under harness/ imports reports/, nothing outside runners/ reaches
    into one runtime's adapter. A broken contract names the offending import."""
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout[-4000:]
    assert "0 broken" in lint.stdout


def _compared_strings(tree: ast.AST) -> set[str]:
    """String constants an ``==``/``!=``/``in`` comparison tests against (tuples included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                items = (
                    operand.elts
                    if isinstance(operand, ast.Tuple | ast.Set | ast.List)
                    else [operand]
                )
                found |= {
                    i.value
                    for i in items
                    if isinstance(i, ast.Constant) and isinstance(i.value, str)
                }
    return found


def test_nothing_outside_runners_compares_a_runtime_or_engine_name() -> None:
    from runners import Engine, runner_names
    from runners.server_profiles import PROFILES

    runtimes = {*runner_names(), *(e.value for e in Engine), *PROFILES}
    runtimes |= {p.stem for p in (REPO / "conf" / "runtime").glob("*.yaml")}
    offending = [
        f"{path.relative_to(REPO)}: {name!r}"
        for package in ("harness", "reports", "hydra_plugins")
        for path in sorted((REPO / package).rglob("*.py"))
        for name in sorted(_compared_strings(ast.parse(path.read_text())) & runtimes)
    ]
    assert offending == []

"""Every third-party package the code imports is declared in the install set of the part that imports it.

server/ may use the runtime set (+ ONNX Runtime), export/ adds `export`, tests/ add `test`, benchmarks/ add
`bench`; a part's set also covers the first-party code it imports (the tests import the benchmark harness). A package that only arrives as someone else's dependency can vanish with that dependency's next
release, so it must be named here too.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# The image test's scripts in deploy/docker import each other by file name (tests put that folder on sys.path).
FIRST_PARTY = {"server", "export", "tests", "benchmarks", "tools"} | {
    path.stem for path in (ROOT / "deploy" / "docker").glob("*.py")}
ORT_EXTRAS = ("cpu", "gpu", "gpu-wheels")
# Scripts that run in a contender's own virtual environment (benchmarks/triton.py installs it), never in ours.
OWN_VENV_SCRIPTS = {"benchmarks/apps/pytriton_app.py"}
PARTS = {"server": (), "export": ("export",), "tests": ("export", "test"), "benchmarks": ("export", "bench"),
         "tools": ()}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(extras: tuple[str, ...]) -> set[str]:
    """Distribution names of the runtime set, every ONNX Runtime extra and these extras (self-references too)."""
    names, todo, seen = set(), [*PROJECT["dependencies"]], set()
    todo += [r for extra in (*ORT_EXTRAS, *extras) for r in PROJECT["optional-dependencies"][extra]]
    while todo:
        name, _, rest = re.match(r"([A-Za-z0-9._-]+)(\[([^\]]*)\])?", todo.pop()).groups()
        if canonical(name) == canonical(PROJECT["name"]):
            for extra in rest.split(","):
                if extra not in seen:
                    seen.add(extra)
                    todo += PROJECT["optional-dependencies"][extra.strip()]
        else:
            names.add(canonical(name))
    return names


def _parse(path: Path) -> ast.AST:
    """ast.parse on a fresh thread: CPython 3.11.7 can raise a spurious "AST constructor recursion depth
    mismatch" SystemError on a thread whose recursion counter an earlier test left off (gh-106905, fixed in
    3.11.8); the counter is per thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(ast.parse, path.read_text(), str(path)).result()


def imported_modules(part: str, first_party: bool = False) -> dict[str, str]:
    """Top-level third-party (or first-party) modules imported anywhere under ROOT/part -> a file that imports it."""
    found = {}
    for path in (ROOT / part).rglob("*.py"):
        relative = path.relative_to(ROOT)
        if str(relative) in OWN_VENV_SCRIPTS or any(folder.startswith(".venv") for folder in relative.parts):
            continue  # the benchmark's own venvs (benchmarks/.venv-*) hold other projects' code
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                third_party = top not in sys.stdlib_module_names and top not in FIRST_PARTY and top != "__future__"
                if (top in FIRST_PARTY) if first_party else third_party:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


DISTRIBUTIONS = importlib.metadata.packages_distributions()


def reachable_parts(part: str) -> list[str]:
    """part and the first-party parts it imports, directly or through them."""
    seen, todo = [], [part]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.append(current)
            todo += [p for p in imported_modules(current, first_party=True) if p in PARTS]
    return seen


@pytest.mark.parametrize("part", sorted(PARTS))
def test_every_imported_package_is_declared(part):
    allowed = declared(PARTS[part])
    undeclared = {}
    imports = {m: w for p in reachable_parts(part) for m, w in imported_modules(p).items()}
    for module, where in imports.items():
        # A module not installed here (bench tools under `make test`) is named like its distribution.
        providers = {canonical(d) for d in DISTRIBUTIONS.get(module, [module])}
        if not providers & allowed:
            undeclared[module] = (where, sorted(providers))
    assert not undeclared, f"imported but not declared for {part}/: {undeclared}"


def test_the_check_sees_a_missing_declaration():
    assert "requests" in declared(("test",)) and "requests" not in declared(("export",))
    assert "huggingface-hub" in declared(("export",)) and "torch" in declared(("test",))
    assert "fastapi" not in declared(("export",)) and "fastapi" in declared(("bench",))
    assert set(reachable_parts("tests")) == set(PARTS) and reachable_parts("server") == ["server"]

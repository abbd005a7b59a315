"""The shape of the package: no import cycles, dependencies one way between stages, short modules,
and a plain (non-editable) install that finds its data files."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "continualcode"

LAYERS = [
    # top first: a module may import from its own package and from packages listed after it
    ["__main__"],
    ["cli"],
    ["commands"],
    ["evals"],
    ["hooks"],
    ["ui"],
    ["session"],
    ["solve"],
    ["agent"],
    ["learning"],
    ["engines"],
    ["tools", "store", "adapters"],
    ["config"],
    ["paths", "models"],
    ["atomic", "process"],
    ["credentials"],
    ["__init__"],
]
"""docs/architecture.md explains the order; siblings in one row never import each other."""

MAX_LINES = 420
"""STYLE.md: files a reader can hold in their head, ~400 lines."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every continualcode module `path` imports: at module level, inside functions, under TYPE_CHECKING."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target != "continualcode":
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def rank(module: str) -> int:
    name = stage(module)
    for index, row in enumerate(LAYERS):
        if name in row:
            return index
    raise AssertionError(f"{module}: stage {name!r} is not in LAYERS; place it in tests/test_architecture.py "
                         "and docs/architecture.md")


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_counting_function_level_and_type_checking_imports():
    edges = graph()
    assert len(edges) > 60
    assert find_cycle(edges) is None, f"import cycle: {' -> '.join(find_cycle(edges))}"


def test_dependencies_run_one_way_between_stages():
    wrong = []
    for module, targets in graph().items():
        for target in targets:
            if stage(target) == stage(module):
                continue
            if rank(target) <= rank(module):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports against the layering (tests/test_architecture.py LAYERS):\n" + "\n".join(sorted(wrong))


def test_production_code_never_imports_benchmarks():
    for module, targets in graph().items():
        if stage(module) not in ("evals", "commands", "cli"):
            assert not [t for t in targets if stage(t) == "evals"], module


def test_modules_stay_short():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by responsibility (limit {MAX_LINES} lines): {long}"


@pytest.mark.slow
def test_a_plain_install_finds_presets_stylesheet_prompts_and_bench_sets(tmp_path):
    """`pip install .` (not editable) into a fresh venv; dependencies come from the current venv."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(ROOT)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("continualcode-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True)
    # the current venv's packages, but not its editable continualcode (.pth lines are not site dirs)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = """
import importlib.resources as r, json, continualcode
from continualcode.adapters.presets import preset_for
from continualcode.evals.learning_bench import DEFAULT_SCENARIOS, load_scenarios
print(json.dumps({
    "file": continualcode.__file__,
    "preset": preset_for("qwen2.5-coder-0.5b").name,
    "tcss": len(r.files("continualcode.ui").joinpath("tui.tcss").read_text()),
    "prompt": len(r.files("continualcode.agent").joinpath("prompts/system.md").read_text()),
    "scenarios": len(load_scenarios(DEFAULT_SCENARIOS)),
}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    import json

    found = json.loads(done.stdout)
    assert found["file"].startswith(str(site)), found
    assert found["preset"] == "qwen2.5-coder-0.5b" and found["tcss"] > 100 and found["prompt"] > 100
    assert found["scenarios"] >= 14

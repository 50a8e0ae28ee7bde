"""Rules from STYLE.md that keep the layers apart, checked in fresh interpreters.

* ``core`` never imports streamlit (not at import time, and not lazily inside a function).
* Imports run down the stages only: kernel < data < models < inference < export < training <
  evaluation < reports < cli (function-level imports counted).
* Importing ``core`` does not load TensorFlow: the Home page paints before TensorFlow has
  loaded, and listing or scanning a dataset never needs it.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import core

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CORE_DIR = Path(core.__file__).parent
HEAVY = ("streamlit", "tensorflow", "keras")


def core_modules() -> list[str]:
    """Every module in core/ and its sub-packages, except ``__main__`` (importing it runs the CLI)."""
    names = [m.name for m in pkgutil.walk_packages([str(CORE_DIR)], prefix="core.")
             if not m.name.endswith("__main__")]
    assert len(names) > 40, "module discovery found suspiciously few modules"
    return sorted(names)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (annotations only, never executed)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            inside.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return inside


def _core_imports(path: Path, names: set[str]) -> set[str]:
    """The core modules a source file imports at run time anywhere in it (function-level imports
    included; imports for annotations only, under ``if TYPE_CHECKING:``, are not run and so left out)."""
    out = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in out if n in names and n != "core"}


def test_core_has_no_import_cycles_even_through_function_level_imports() -> None:
    modules = {}
    for path in CORE_DIR.rglob("*.py"):
        parts = path.relative_to(CORE_DIR.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {name: _core_imports(path, set(modules)) for name, path in modules.items()}
    # A package's __init__ is not a cycle partner of its own modules.
    graph = {m: {d for d in deps if not m.startswith(d + ".") and not d.startswith(m + ".")}
             for m, deps in graph.items()}
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if node in done:
            return
        for dep in sorted(graph[node]):
            visit(dep, [*stack, node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])


#: The stages, lowest first: a module may import its own stage and the ones below, never above.
STAGES = ("kernel", "data", "models", "inference", "export", "training", "evaluation", "reports", "cli")
#: ``python -m core`` is the entry point: it sits above everything by definition.
ENTRY_POINTS = {"core.__main__"}


def stage_of(module: str) -> str:
    """The stage of a ``core`` module: its sub-package, or the kernel for the flat modules."""
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in STAGES else "kernel"


def upward_imports(module: str, source: str) -> list[str]:
    """``module:line -> target`` for each import in ``source`` (anywhere, TYPE_CHECKING blocks too)
    that reaches a higher stage than ``module``'s own."""
    rank = STAGES.index(stage_of(module))
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{a.name}" for a in node.names] if node.module == "core" else [node.module]
        else:
            continue
        found += [f"{module}:{node.lineno} -> {t}" for t in targets
                  if t.startswith("core.") and STAGES.index(stage_of(t)) > rank]
    return found


def _all_core_sources() -> dict[str, str]:
    out = {}
    for path in sorted(CORE_DIR.rglob("*.py")):
        parts = path.relative_to(CORE_DIR.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path.read_text()
    return out


def test_imports_run_down_the_stages_only() -> None:
    offenders = [hit for name, src in _all_core_sources().items() if name not in ENTRY_POINTS
                 for hit in upward_imports(name, src)]
    assert offenders == [], "imports that reach up a stage:\n" + "\n".join(offenders)


def test_the_stage_rule_catches_an_injected_upward_import() -> None:
    """The rule above can fail: a synthetic module source with upward imports, top-level and inside a
    function, is caught; the same imports from a higher stage are not."""
    source = "from core.data.preprocess import load_many\n\ndef f():\n    from core.inference.runner import ModelRunner\n"
    assert upward_imports("core.models.card", source) == ["core.models.card:4 -> core.inference.runner"]
    assert upward_imports("core.config", "import core.training.config\n") == [
        "core.config:1 -> core.training.config"]
    assert upward_imports("core.config", "from core import jobs, cli\n") == ["core.config:1 -> core.cli"]
    assert upward_imports("core.reports.charts", source) == []
    # and the real tree, with one upward import injected into a real module, fails
    sources = _all_core_sources()
    sources["core.data.shifts"] += "\ndef _late():\n    from core.evaluation.robustness import robustness_table\n"
    assert [h for n, s in sources.items() if n not in ENTRY_POINTS for h in upward_imports(n, s)] == [
        f"core.data.shifts:{sources['core.data.shifts'].count(chr(10))} -> core.evaluation.robustness"]


def test_core_is_cut_into_the_documented_sub_packages() -> None:
    packages = sorted(p.name for p in CORE_DIR.iterdir() if (p / "__init__.py").is_file())
    assert packages == sorted(s for s in STAGES if s != "kernel")
    flat = sorted(p.stem for p in CORE_DIR.glob("*.py"))
    # The shared kernel only: everything else lives in a sub-package named after its stage.
    assert flat == ["__init__", "__main__", "atomic", "cachefs", "classes", "config", "errors", "jobs", "lazy_tensorflow", "options",
                    "paths", "safetext"]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )


def _first_importer(modules: list[str]) -> dict[str, str | None]:
    """In one fresh interpreter, import ``modules`` in order; for each heavy package, the first
    module after whose import it appeared in sys.modules (None if it never did)."""
    code = f"""
import importlib, json, sys
culprit = dict.fromkeys({HEAVY!r})
for name in {modules!r}:
    importlib.import_module(name)
    for heavy in culprit:
        if culprit[heavy] is None and heavy in sys.modules:
            culprit[heavy] = name
print(json.dumps(culprit))
"""
    result = _run(code)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_core_does_not_load_tensorflow_or_streamlit() -> None:
    culprit = _first_importer(core_modules())
    assert culprit["streamlit"] is None, f"{culprit['streamlit']} imports streamlit"
    assert culprit["tensorflow"] is None, (
        f"importing {culprit['tensorflow']} loads TensorFlow; import it inside the functions that need it"
    )
    assert culprit["keras"] is None, f"importing {culprit['keras']} loads Keras"


def test_listing_and_scanning_never_import_tensorflow() -> None:
    code = (
        "import core.data.datasets, core.data.scan, core.data.splits, core.cli; import sys; "
        "heavy = [m for m in ('tensorflow', 'keras', 'streamlit') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr[-2000:]


def test_no_core_source_mentions_a_streamlit_import() -> None:
    """Static check: catches lazy imports inside functions that an import test cannot see."""
    offenders = []
    for path in sorted(CORE_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(n == "streamlit" or n.startswith("streamlit.") for n in names):
                offenders.append(f"{path.relative_to(CORE_DIR)}:{node.lineno}")
    assert offenders == [], f"core must not import streamlit: {offenders}"


def test_cli_help_works_without_heavy_imports() -> None:
    result = _run(
        "import sys; sys.argv = ['core', '--help']\n"
        "from core.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules and 'streamlit' not in sys.modules"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "scan" in result.stdout


def test_no_core_module_imports_a_private_name_of_another() -> None:
    """A helper another module needs is public API (named, typed, documented) of its module."""
    offenders = []
    for path in sorted(CORE_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("core"):
                offenders += [f"{path.relative_to(CORE_DIR)}:{node.lineno} {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == [], f"private names imported across modules: {offenders}"

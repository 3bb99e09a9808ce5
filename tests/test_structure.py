"""The package's shape: imports point one way, modules keep their private names, the scenario
notebooks share their code, and notebook parameters are checked by the library."""
import ast
from pathlib import Path

import nbformat
import pytest

from unlearnlib.notebook import check_parameters

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "unlearnlib"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(name: str, path: Path, mods: dict) -> list[tuple[str, list[str]]]:
    """Every unlearnlib module ``name`` imports, at any depth (inside functions too), with the names."""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            names = [a.name for a in node.names]
            for t in [target] + [f"{target}.{n}" for n in names]:
                if t in mods and t != name:
                    out.append((t, names))
    return out


def test_import_graph_has_no_cycle_even_through_function_level_imports():
    mods = _modules()
    graph = {m: sorted({t for t, _ in _imports(m, p, mods)}) for m, p in mods.items()}
    state: dict = {}

    def visit(u, path):
        state[u] = "open"
        for v in graph[u]:
            assert state.get(v) != "open", "import cycle: " + " -> ".join(path + [u, v])
            if v not in state:
                visit(v, path + [u])
        state[u] = "done"
    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    # the circle this replaced: methods -> sweep -> study -> methods
    assert "unlearnlib.sweep" not in graph["unlearnlib.methods.api"]


def test_no_module_imports_another_modules_private_names():
    mods = _modules()
    bad = [(m, t, n) for m, p in mods.items() for t, names in _imports(m, p, mods)
           for n in names if n.startswith("_") and n != "__version__"]
    assert bad == []


def test_lower_floors_import_nothing_above_them():
    mods = _modules()
    floors = {"unlearnlib.config": set(), "unlearnlib.io": set(), "unlearnlib.runtime": set(),
              "unlearnlib.presets": {"unlearnlib.io", "unlearnlib.data"},
              "unlearnlib.profiles": {"unlearnlib.config", "unlearnlib.presets"}}
    for m, allowed in floors.items():  # the package root only holds __version__
        assert {t for t, _ in _imports(m, mods[m], mods)} - {"unlearnlib"} <= allowed, m


def _code_cells(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]


def test_scenario_notebooks_differ_only_in_parameters_and_prose():
    assert _code_cells("02_rb_cifar10") == _code_cells("03_rc_scrub")


@pytest.mark.parametrize("params,msg", [
    ({"scenarios": ["rb", "cifar"]}, r"scenarios must be a non-empty list of rb or rc or cf, got \['rb', 'cifar'\]"),
    ({"scenarios": "rb"}, "scenarios must be a non-empty list"),
    ({"methods": ["scrub", "scrubb"]}, "methods must be a non-empty list of retrain, finetune"),
    ({"lrs": [0.01, 0]}, r"lrs must be a non-empty list of numbers in \(0, 1000\], got \[0.01, 0\]"),
    ({"lrs": []}, "lrs must be a non-empty list"),
    ({"n_images": 51}, "n_images must be an integer in 1..50, got 51"),
    ({"n_images": True}, "n_images must be an integer in 1..50, got True"),
    ({"preset": "../escaped"}, "preset name '../escaped' is not allowed"),
])
def test_notebook_parameter_checks_live_in_check_parameters(params, msg):
    with pytest.raises(ValueError, match=msg):
        check_parameters(params, set(), set(params))

"""The notebook series: jupytext pairs in sync, no outputs, validated parameters under papermill.

The notebooks themselves are executed end to end by nbmake (``pytest --nbmake notebooks``, part
of the README's test command) on the quick profile with the real archives.
"""
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NB = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_series_is_complete():
    assert [p.stem for p in NB] == ["01_train_original", "02_rb_cifar10", "03_rc_scrub", "04_loss_curves",
                                    "05_saliency", "06_privacy", "07_sweep"]


@pytest.mark.parametrize("path", NB, ids=lambda p: p.stem)
def test_pair_in_sync_without_outputs_and_parameters_tagged(path):
    ipynb = nbformat.read(path, as_version=4)
    py = jupytext.read(path.with_suffix(".py"))
    assert [(c.cell_type, c.source) for c in ipynb.cells] == [(c.cell_type, c.source) for c in py.cells]
    for c in ipynb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None
    tagged = [i for i, c in enumerate(ipynb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    validation = next(c for c in ipynb.cells[tagged[0] + 1:] if c.cell_type == "code")
    assert "check_parameters(globals(), _before, _declared)" in validation.source
    assert "colab-badge.svg" in ipynb.cells[0].source
    # no algorithm code: nothing is defined in a notebook
    assert not any(re.search(r"^\s*(def|class|lambda)\b", c.source, re.M) for c in ipynb.cells if c.cell_type == "code")


def _run(name, tmp_path, **params):
    import papermill as pm
    out = tmp_path / f"{name}.out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                            cwd=str(ROOT / "notebooks"), progress_bar=False, log_output=False)
    return e.value, nbformat.read(out, as_version=4)


def _failing_cell(nb):
    return next(c for c in nb.cells if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.outputs))


def test_misspelled_papermill_parameter_fails_and_names_it(tmp_path):
    err, nb = _run("01_train_original", tmp_path, sede=2)
    assert err.ename == "ValueError" and "unknown parameter(s) ['sede']" in err.evalue
    assert "check_parameters" in _failing_cell(nb).source


def test_bad_scenario_stops_in_the_validation_cell(tmp_path):
    err, nb = _run("01_train_original", tmp_path, scenario="foo")
    assert "unknown scenario 'foo'; allowed: rb, rc" in err.evalue
    assert "check_parameters" in _failing_cell(nb).source
    assert all(not c.get("outputs") for c in nb.cells[nb.cells.index(_failing_cell(nb)) + 1:])


def test_bad_seed_is_refused(tmp_path):
    err, _ = _run("03_rc_scrub", tmp_path, seed=-1)
    assert "seed must be a non-negative integer, got -1" in err.evalue

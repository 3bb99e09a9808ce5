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
                                    "05_saliency", "06_privacy", "07_sweep", "08_class_forgetting"]


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
    assert "unknown scenario 'foo'; allowed: rb, rc, cf" in err.evalue
    assert "check_parameters" in _failing_cell(nb).source
    assert all(not c.get("outputs") for c in nb.cells[nb.cells.index(_failing_cell(nb)) + 1:])


def test_bad_seed_is_refused(tmp_path):
    err, _ = _run("03_rc_scrub", tmp_path, seed=-1)
    assert "seed must be a non-negative integer, got -1" in err.evalue


def test_colab_badge_and_install_line_come_from_one_pinned_url(tmp_path):
    """Every notebook's badge and set-up cell are generated from unlearnlib.colab (one URL, the
    version's tag, never a branch); a notebook that disagrees is found and rewritten."""
    import shutil
    from unlearnlib import __version__
    from unlearnlib.colab import REPOSITORY, badge, install_spec, sync_notebooks
    assert sync_notebooks(ROOT / "notebooks") == []
    assert install_spec() == f"unlearnlib[notebooks] @ git+{REPOSITORY}@v{__version__}"
    assert f"/blob/v{__version__}/notebooks/02_rb_cifar10.ipynb)" in badge("02_rb_cifar10.ipynb")
    for ext in (".py", ".ipynb"):
        src = (ROOT / "notebooks" / f"02_rb_cifar10{ext}").read_text()
        assert f"@v{__version__}" in src and "/blob/main/" not in src
        (tmp_path / f"02_rb_cifar10{ext}").write_text(src.replace(f"v{__version__}", "main"))
    shutil.copy(ROOT / "notebooks" / "01_train_original.py", tmp_path)
    assert sync_notebooks(tmp_path) == ["02_rb_cifar10.ipynb", "02_rb_cifar10.py"]
    assert sync_notebooks(tmp_path, write=True) == ["02_rb_cifar10.ipynb", "02_rb_cifar10.py"]
    assert sync_notebooks(tmp_path) == []
    for ext in (".py", ".ipynb"):
        assert (tmp_path / f"02_rb_cifar10{ext}").read_text() == (ROOT / "notebooks" / f"02_rb_cifar10{ext}").read_text()


@pytest.mark.slow
def test_an_executed_notebook_shows_every_figure_it_saves(tmp_path, monkeypatch, data_dir):
    """In a kernel the figures show inline (one image/png output per saved PNG), not only as files:
    the kernel runs with the backend Jupyter or Colab gives it (CI's MPLBACKEND=Agg removed)."""
    import papermill as pm
    monkeypatch.delenv("MPLBACKEND", raising=False)
    figs = tmp_path / "figures"
    out = tmp_path / "01.out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "01_train_original.ipynb"), str(out),
                        parameters={"profile": "quick", "run_dir": str(tmp_path / "run"),
                                    "figures_dir": str(figs), "data_dir": str(data_dir)},
                        cwd=str(ROOT / "notebooks"), progress_bar=False, log_output=False)
    nb = nbformat.read(out, as_version=4)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    saved = sorted(figs.glob("*.png"))
    assert len(saved) == 1 and len(images) == len(saved)


def test_progress_bars_are_widgets_in_notebooks_and_text_under_run_all(monkeypatch):
    """tqdm.auto (a widget in Jupyter and Colab, with ipywidgets installed) unless run-all asks for
    text, which streams to its terminal."""
    import tqdm.auto
    import tqdm.std
    from unlearnlib.runtime import progress_bar
    monkeypatch.delenv("UNLEARNLIB_PROGRESS", raising=False)
    with progress_bar(total=1, disable=True) as bar:
        assert type(bar) is tqdm.auto.tqdm
    monkeypatch.setenv("UNLEARNLIB_PROGRESS", "text")
    with progress_bar(total=1, disable=True) as bar:
        assert type(bar) is tqdm.std.tqdm

"""Shared fixtures: real data from the offline archives, and one quick original model.

Everything the suite writes goes to a temporary folder: the notebooks executed by nbmake resolve
their run, figures and results folders under ``UNLEARNLIB_OUTPUT_DIR`` and presets go to
``UNLEARNLIB_PRESETS``, both set here for the session, so the checkout stays clean.
Notebook items (nbmake) are marked ``slow``: ``pytest -m "not slow"`` is the fast loop; they run
seeds 0 and 1 (``UNLEARNLIB_SEEDS``, set around each notebook item only).
"""
import os
import shutil
import tempfile
import warnings

import pytest
import torch

from unlearnlib.data import find_data_dir

torch.set_num_threads(max(1, os.cpu_count() or 1))
warnings.filterwarnings("ignore", message="Kernel is running over TCP")
_OUT = tempfile.mkdtemp(prefix="unlearnlib-tests-")


class _NotebookSeeds:
    """The notebooks nbmake executes run seeds 0 and 1 (notebook.default_seeds), not the profile's
    three: the same code on two thirds of the models, to keep CI near 20 minutes. Registered as a
    plugin because this conftest's own runtest hooks reach only the items under tests/, and the
    notebooks are collected from notebooks/."""

    @staticmethod
    def pytest_runtest_setup(item):
        if str(item.fspath).endswith(".ipynb"):
            os.environ["UNLEARNLIB_SEEDS"] = "0,1"

    @staticmethod
    def pytest_runtest_teardown(item):
        if str(item.fspath).endswith(".ipynb"):
            os.environ.pop("UNLEARNLIB_SEEDS", None)


def pytest_configure(config):
    # set before any notebook kernel starts: kernels inherit this process's environment
    os.environ["UNLEARNLIB_OUTPUT_DIR"] = _OUT
    os.environ["UNLEARNLIB_PRESETS"] = os.path.join(_OUT, "presets")
    config.pluginmanager.register(_NotebookSeeds(), "unlearnlib-notebook-seeds")


def pytest_unconfigure(config):
    shutil.rmtree(_OUT, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def data_dir():
    d = find_data_dir()
    assert d is not None, "the offline archives (../shared/data or UNLEARNLIB_DATA) are needed for the tests"
    return d


@pytest.fixture(scope="session")
def rb_quick(data_dir):
    from unlearnlib.splits import make_split
    return make_split("rb", 0, data_dir, profile="quick")


@pytest.fixture(scope="session")
def original_rb(rb_quick):
    """The quick-profile original model on RB seed 0 (fits its training set)."""
    from unlearnlib.models import build_model
    from unlearnlib.profiles import PROFILES
    from unlearnlib.runtime import seed_everything
    from unlearnlib.train import train
    p = PROFILES["quick"]
    seed_everything(0)
    m = build_model("resnet18", 10, p.width, rb_quick.mean, rb_quick.std)
    s = rb_quick
    train(m, torch.cat([s.retain.images, s.forget.images]), torch.cat([s.retain.labels, s.forget.labels]),
          p.train, seed=0)
    return m.eval()


@pytest.fixture(scope="session")
def retrain_rb(rb_quick, original_rb):
    from unlearnlib.methods import method_config, unlearn
    return unlearn("retrain", original_rb, rb_quick, method_config("retrain", "quick", "rb"))

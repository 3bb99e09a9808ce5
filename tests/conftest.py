"""Shared fixtures: real data from the offline archives, and one quick original model."""
import os
import warnings

import pytest
import torch

from unlearnlib.data import find_data_dir

torch.set_num_threads(max(1, os.cpu_count() or 1))
warnings.filterwarnings("ignore", message="Kernel is running over TCP")


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
    from unlearnlib.train import seed_everything, train
    p = PROFILES["quick"]
    seed_everything(0)
    m = build_model("resnet18", 10, p.width, rb_quick.mean, rb_quick.std)
    s = rb_quick
    train(m, torch.cat([s.retain.images, s.forget.images]), torch.cat([s.retain.labels, s.forget.labels]),
          p.train, seed=0)
    return m.eval()


@pytest.fixture(scope="session")
def retrain_rb(rb_quick, original_rb):
    from unlearnlib.study import method_config
    from unlearnlib.methods import unlearn
    return unlearn("retrain", original_rb, rb_quick, method_config("retrain", "quick", "rb"))

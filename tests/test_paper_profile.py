"""The ``paper`` profile's GPU path on every commit, on the CPU: every registered method at full
width (ResNet-18, width 1) with the real per-scenario configs (official settings, feature taps,
beta), RB at 32x32 and RC at 64x64 on the real archives, for one epoch of two or three steps on a
small slice, through ``unlearn()`` and ``evaluate()``. Only ``epochs`` is changed, and the data
is sliced so that an epoch is two steps (a full batch and a part one); every method is evaluated on one fixed small slice
(32 retain and forget images, 64 test and validation) against the untrained starting model."""
import dataclasses
import functools

import pytest
import torch

from unlearnlib.data import LabelledImages
from unlearnlib.methods import get_method, method_config, method_names, unlearn
from unlearnlib.metrics import evaluate
from unlearnlib.models import build_model
from unlearnlib.profiles import get_profile
from unlearnlib.splits import make_split

pytestmark = pytest.mark.slow


def _take(s: LabelledImages, n: int) -> LabelledImages:
    return LabelledImages(s.images[:n], s.labels[:n])


def _steps_config(method, scenario):
    """The paper profile's config for ``scenario``, one epoch (for methods that train in epochs),
    and slice sizes giving 2 steps: a full batch and a part one of at most 16 images (batch 256 at
    full width costs ~10 s a step here)."""
    one = {"epochs": 1} if "epochs" in {f.name for f in dataclasses.fields(get_method(method).config)} else {}
    cfg = method_config(method, "paper", scenario, **one)
    two_steps = lambda b: b + min(b, 16)  # noqa: E731
    return cfg, two_steps(cfg.batch_size), two_steps(getattr(cfg, "forget_batch_size", cfg.batch_size))


@functools.cache
def paper_split(scenario):
    """The scenario's paper split, an untrained full-width model (the methods' starting point and
    the evaluation's reference), and a fixed small evaluation slice with its evaluation cache:
    the reference's outputs on it are computed once for every method of the scenario."""
    split = make_split(scenario, 0, profile="paper")
    torch.manual_seed(0)
    model = build_model("resnet18", split.num_classes, get_profile("paper").width, split.mean, split.std)
    ev = dataclasses.replace(split, retain=_take(split.retain, 32), forget=_take(split.forget, 32),
                             forget_true_labels=split.forget_true_labels[:32],
                             test=_take(split.test, 64), validation=_take(split.validation, 64))
    return split, model.eval(), ev, {}


def test_paper_configs_are_the_official_ones():
    rc = method_config("scrub", "paper", "rc")
    assert (rc.alpha, rc.T, rc.max_steps, rc.epochs, rc.forget_batch_size, tuple(rc.lr_decay_epochs)) == \
        (0.01, 2.0, 2, 10, 32, (7, 10, 10))
    rb = method_config("scrub", "paper", "rb")
    assert (rb.alpha, rb.T, rb.max_steps, rb.epochs, rb.forget_batch_size, tuple(rb.lr_decay_epochs)) == \
        (0.5, 4.0, 3, 5, 16, (3, 5, 9))
    assert method_config("scrub_attention", "paper", "rc").layers == ("layer1", "layer2", "layer3", "layer4")
    assert method_config("scrub_similarity", "paper", "rb").layers == ("layer4",)


# every method on RB; on RC the paper's methods, not the five after SCRUB (batch 256, so two steps are
# 512 images at full width, at 64x64: their shapes and configs are the same code as at 32x32)
CASES = [(sc, m) for sc in ("rb", "rc") for m in method_names() if sc == "rb" or m not in method_names("after_scrub")]


@pytest.mark.parametrize("scenario,method", CASES, ids=[f"{sc}-{m}" for sc, m in CASES])
def test_every_method_runs_two_steps_of_the_paper_profile_at_full_width(scenario, method):
    split, model, ev, cache = paper_split(scenario)
    assert model.conv1.out_channels == 64  # width 1
    assert split.retain.images.shape[-1] == (32 if split.scenario == "rb" else 64)
    cfg, rn, fn = _steps_config(method, split.scenario)
    full = method_config(method, "paper", split.scenario)
    assert dataclasses.replace(cfg, **({"epochs": full.epochs} if hasattr(full, "epochs") else {})) == full  # only the epochs differ
    small = dataclasses.replace(ev, retain=_take(split.retain, rn), forget=_take(split.forget, fn),
                                forget_true_labels=split.forget_true_labels[:fn])
    seen = []
    res = unlearn(method, model, small, cfg, on_epoch_end=lambda e, row: seen.append(row))
    assert len(res.history) == 1 and not res.diverged
    row = evaluate(res.model, ev, reference=model, cache=cache)
    assert 0 <= row["forget_acc"] <= 1 and 0 <= row["test_acc"] <= 1 and row["avg_gap"] >= 0
    # the unlearned weights moved: the method really stepped
    moved = any(not torch.equal(a, b) for a, b in zip(res.model.state_dict().values(), model.state_dict().values())
                if a.is_floating_point())
    assert moved
    if getattr(cfg, "beta", 0) > 0:
        assert cfg.layers and res.history[0]["min_loss"] > 0

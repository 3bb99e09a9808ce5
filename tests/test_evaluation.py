"""The evaluation cannot flatter a method: class-matched membership inference, SalUn's Avg. Gap,
selection on the validation set only, and a split fingerprint that covers the pixels."""
import dataclasses

import numpy as np
import pytest
import torch

from unlearnlib import splits as splits_mod
from unlearnlib.checkpoints import CheckpointMismatch, check_model_split
from unlearnlib.data import LabelledImages
from unlearnlib.methods import unlearn
from unlearnlib.metrics import (GAP_METRICS, _conf_entropy, evaluate, mia_efficacy, mia_loss_attack,
                                per_example_loss)
from unlearnlib.models import build_model
from unlearnlib.splits import make_split
from unlearnlib.sweep import select_presets
from unlearnlib.train import predict_logits


def _scrambled_test(split, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = split.test.labels[torch.randperm(len(split.test), generator=g)]
    return dataclasses.replace(split, test=LabelledImages(split.test.images, labels))


def test_rc_loss_attack_uses_test_images_of_the_forget_classes_only(data_dir):
    s = make_split("rc", 0, data_dir, profile="quick")
    torch.manual_seed(0)
    m = build_model("resnet18", 20, 0.125, s.mean, s.std).eval()
    row = evaluate(m, s)
    assert row["mia_nonmembers"] == "test, classes [0, 1]"
    keep = (s.test.labels == 0) | (s.test.labels == 1)
    assert int(keep.sum()) == 20  # 10 per class in the quick profile, not all 200 test images
    f, t = predict_logits(m, s.forget.images), predict_logits(m, s.test.images[keep])
    expected = mia_loss_attack(per_example_loss(f, s.forget.labels), per_example_loss(t, s.test.labels[keep]),
                               seed=0, folds=5)
    assert row["mia_loss"] == expected
    # RB's forget set spans every class: nothing is restricted
    rb = make_split("rb", 0, data_dir, profile="quick")
    assert evaluate(build_model("resnet18", 10, 0.125).eval(), rb)["mia_nonmembers"] == "test, all classes"


def test_avg_gap_is_salun_four_gaps_and_mia_efficacy_is_confidence_only(rb_quick, original_rb):
    reference = unlearn("neggrad", original_rb, rb_quick, lr=5e-3, epochs=1).model  # any other model will do
    row = evaluate(original_rb, rb_quick, reference=reference)
    ref = evaluate(reference, rb_quick)
    assert GAP_METRICS == ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")
    gaps = [abs(row[k] - ref[k]) for k in GAP_METRICS]
    assert row["avg_gap"] == pytest.approx(sum(gaps) / 4)
    assert row["avg_gap_5"] == pytest.approx((sum(gaps) + abs(row["mia_loss"] - ref["mia_loss"])) / 5)
    out = {n: predict_logits(original_rb, getattr(rb_quick, n).images) for n in ("retain", "test", "forget")}
    conf = {n: _conf_entropy(o, getattr(rb_quick, n).labels)[:, :1] for n, o in out.items()}
    assert row["mia_efficacy"] == mia_efficacy(conf["retain"], conf["test"], conf["forget"], seed=0)
    both = {n: _conf_entropy(o, getattr(rb_quick, n).labels) for n, o in out.items()}
    assert row["mia_efficacy_conf_entropy"] == mia_efficacy(both["retain"], both["test"], both["forget"], seed=0)


def test_evaluation_cache_gives_the_same_row_and_runs_the_reference_once(rb_quick, original_rb):
    """Scoring many models against one Retrain: with ``cache`` the reference's outputs are computed
    once, and every row equals the row computed without it."""
    reference = unlearn("neggrad", original_rb, rb_quick, lr=5e-3, epochs=1).model
    other = unlearn("neggrad", original_rb, rb_quick, lr=1e-3, epochs=1).model
    calls = []
    hook = reference.register_forward_hook(lambda *a: calls.append(1))
    plain = [evaluate(m, rb_quick, reference=reference, original=original_rb) for m in (original_rb, other)]
    per_call = len(calls)
    assert per_call > 0
    calls.clear()
    cache = {}
    cached = [evaluate(m, rb_quick, reference=reference, original=original_rb, cache=cache)
              for m in (original_rb, other)]
    hook.remove()
    assert cached == plain
    assert len(calls) == per_call // 2  # the second call reused the reference's outputs
    assert set(cache) == {"reference", "original_forget"}


@pytest.mark.slow
def test_no_selection_reads_the_reported_test_set(rb_quick, original_rb, retrain_rb):
    """Scrambling the test labels changes every test figure and no choice: the validation Avg.
    Gap, the preset picked from it, and SCRUB+R's rewound epoch and weights stay the same."""
    scrambled = _scrambled_test(rb_quick)
    candidates = {lr: unlearn("scrub", original_rb, rb_quick, epochs=1, max_steps=1, lr=lr).model
                  for lr in (1e-3, 2e-2)}
    picks = []
    for split in (rb_quick, scrambled):
        rows = []
        for lr, model in candidates.items():
            r = evaluate(model, split, reference=retrain_rb.model)
            rows.append({**r, "scenario": "rb", "method": "scrub", "seed": 0, "config_hash": str(lr),
                         "config": {"lr": lr}, "status": "ok"})
        picks.append((select_presets(rows, "rb"), [r["avg_gap_val"] for r in rows], [r["test_acc"] for r in rows]))
    (p1, val1, test1), (p2, val2, test2) = picks
    assert val1 == val2 and p1 == p2
    assert test1 != test2  # the scrambled test set really is different
    kw = dict(epochs=3, max_steps=2, lr=2e-2, rewind=True)
    a, b = unlearn("scrub", original_rb, rb_quick, **kw), unlearn("scrub", original_rb, scrambled, **kw)
    assert a.rewound_epoch == b.rewound_epoch
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    with pytest.raises(ValueError, match="needs a validation set"):
        unlearn("scrub", original_rb, dataclasses.replace(rb_quick, validation=None), **kw)


def test_fingerprint_covers_pixels_and_source_and_checkpoints_name_both(data_dir, monkeypatch):
    base = make_split("rb", 0, data_dir, profile="quick")
    real = splits_mod.load_dataset

    def one_pixel_changed(name, part, data_dir=None, cache=None):
        pool, classes = real(name, part, data_dir, cache)
        images = pool.images.clone()
        images[int(base.indices["retain"][0]), 0, 0, 0] ^= 1  # one bit of one pixel of one retain image
        return LabelledImages(images, pool.labels, pool.source), classes
    monkeypatch.setattr(splits_mod, "load_dataset", one_pixel_changed)
    changed = make_split("rb", 0, data_dir, profile="quick")
    assert all(np.array_equal(changed.indices[k], base.indices[k]) for k in base.indices)
    assert changed.fingerprint != base.fingerprint
    meta = {"split_fingerprint": base.fingerprint, "dataset": "cifar10", "num_classes": 10, "seed": 0,
            "data_source": base.data_source}
    with pytest.raises(CheckpointMismatch, match=r"data cifar10-train.zip \(sha256 66772d9f54d33269.*this split is"):
        check_model_split(meta, changed, "to unlearn")

    def other_source(name, part, data_dir=None, cache=None):
        pool, classes = real(name, part, data_dir, cache)
        return LabelledImages(pool.images, pool.labels, "torchvision CIFAR10 download"), classes
    monkeypatch.setattr(splits_mod, "load_dataset", other_source)
    downloaded = make_split("rb", 0, data_dir, profile="quick")
    assert downloaded.fingerprint != base.fingerprint and downloaded.data_source == "torchvision CIFAR10 download"
    with pytest.raises(CheckpointMismatch, match="data torchvision CIFAR10 download"):
        check_model_split(meta, downloaded, "to evaluate")


def test_non_finite_outputs_are_named_not_passed_to_the_attacks(rb_quick):
    m = build_model("resnet18", 10, 0.125).eval()
    with torch.no_grad():
        m.fc.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="the model's outputs are not finite on the retain, forget, test"):
        evaluate(m, rb_quick)


def test_tuning_grid_is_multiples_of_the_official_lr_and_scrub_max_steps():
    from unlearnlib.study import tuning_grid
    assert tuning_grid("scrub", "quick", "rb") == []  # quick reports official settings only
    assert tuning_grid("retrain", "paper-cpu", "rb") == []
    assert tuning_grid("finetune", "paper-cpu", "rb") == [{"lr": 0.04}, {"lr": 0.12}]
    assert tuning_grid("scrub_attention", "paper-cpu", "rb") == [
        {"lr": lr, "max_steps": m} for lr in (5e-4, 1.5e-3) for m in (3, 5)]
    assert tuning_grid("scrub", "paper-cpu", "rc") == [{"lr": lr, "max_steps": 2} for lr in (5e-4, 5e-3)]


def test_select_beta_reads_validation_only_and_refuses_collapsed_models():
    from unlearnlib.study import select_beta
    rows = [{"method": "scrub_attention", "beta": b, "avg_gap_val": v, "avg_gap": t, "gap_retain_acc": g, "seed": s}
            for b, v, t, g in ((1.0, 0.10, 0.01, 0.0), (100.0, 0.05, 0.30, 0.01), (1000.0, 0.07, 0.00, 0.0),
                               (3000.0, 0.01, 0.00, 0.5)) for s in (0, 1)]
    assert select_beta(rows) == {"scrub_attention": {"beta": 100.0, "avg_gap_val": 0.05, "n_seeds": 2}}
    with pytest.raises(ValueError, match="no beta keeps retain accuracy"):
        select_beta([r for r in rows if r["beta"] == 3000.0])


def test_method_table_keeps_official_and_tuned_rows_apart():
    from unlearnlib.report import method_table
    rows = [{"method": m, "variant": v, "seed": s, "forget_acc": f}
            for m, v, f in (("original", "official", 1.0), ("original", "tuned", 1.0), ("retrain", "official", 0.5),
                            ("retrain", "tuned", 0.5), ("scrub", "official", 0.9), ("scrub", "tuned", 0.6))
            for s in (0, 1)]
    t = method_table(rows, ["forget_acc"])
    # Retrain first; rows without an Avg. Gap follow in registry order
    assert [r["label"] for r in t] == ["Retrain", "Original", "SCRUB (official settings)", "SCRUB (tuned on validation)"]
    assert [r["n"] for r in t] == [2, 2, 2, 2]
    assert [r["forget_acc_mean"] for r in t] == pytest.approx([0.5, 1.0, 0.9, 0.6])
    one = method_table([r for r in rows if r["variant"] == "official"], ["forget_acc"])
    assert [r["label"] for r in one] == ["Retrain", "Original", "SCRUB"]


def test_epoch_printer_prints_one_line_per_epoch(capsys):
    from unlearnlib.study import epoch_printer
    show = epoch_printer("original rb seed 0")
    show(3, {"loss": torch.tensor(0.25), "acc": 0.5, "seconds": 4.0, "epoch": 3})
    assert capsys.readouterr().out == "original rb seed 0 epoch 3: loss 0.25, acc 0.5, seconds 4\n"

"""Class forgetting (scenario ``"cf"``, issue 16): the split, the shared original, the metrics and
the report's ordering and best-marking, each checked by hand on the real CIFAR-10 archive."""
import math

import numpy as np
import pytest
import torch

from unlearnlib import profiles
from unlearnlib.config import TrainConfig
from unlearnlib.splits import make_split


@pytest.fixture(scope="module")
def cf0(data_dir):
    return make_split("cf", 0, data_dir, profile="quick")


def test_cf_forgets_every_training_image_of_one_class_and_keeps_rbs_training_set(cf0, rb_quick, data_dir):
    c = cf0.forget_class
    assert 0 <= c < 10 and cf0.scenario == "cf"
    # the class is drawn with the seed: the same seed, the same class; given, it is honoured
    assert make_split("cf", 0, data_dir, profile="quick").forget_class == c
    assert make_split("cf", 0, data_dir, profile="quick", forget_class=3).forget_class == 3
    # forget = all 60 quick training images of the class; retain = the other 540, none of the class
    assert (cf0.forget.labels == c).all() and len(cf0.forget) == 60
    assert len(cf0.retain) == 540 and not (cf0.retain.labels == c).any()
    assert torch.equal(cf0.forget_true_labels, cf0.forget.labels)
    # test: the other classes' 180 held-out images; test_forget: the class's 20
    assert len(cf0.test) == 180 and not (cf0.test.labels == c).any()
    assert len(cf0.test_forget) == 20 and (cf0.test_forget.labels == c).all()
    assert not (cf0.validation.labels == c).any()
    # the same 600 training images (indices, labels, pixels) as RB's split of seed 0
    rb_train = set(rb_quick.indices["retain"]) | set(rb_quick.indices["forget"])
    assert set(cf0.indices["retain"]) | set(cf0.indices["forget"]) == rb_train
    assert set(cf0.indices["test"]) | set(cf0.indices["test_forget"]) == set(rb_quick.indices["test"])
    assert cf0.train_fingerprint == rb_quick.train_fingerprint != make_split("cf", 1, data_dir, profile="quick").train_fingerprint
    assert cf0.fingerprint != rb_quick.fingerprint
    assert cf0.fingerprint != make_split("cf", 0, data_dir, profile="quick", forget_class=(c + 1) % 10).fingerprint


@pytest.mark.parametrize("bad", [10, -1, 2.0, True, "cat"])
def test_cf_bad_forget_class_or_fraction_is_refused_naming_the_value(bad, data_dir):
    with pytest.raises(ValueError, match=r"forget_class must be an integer class index in 0\.\.9 .*got"):
        make_split("cf", 0, data_dir, profile="quick", forget_class=bad)
    with pytest.raises(ValueError, match="forget_fraction is for 'rb' and 'rc'"):
        make_split("cf", 0, data_dir, profile="quick", forget_fraction=0.1)
    with pytest.raises(ValueError, match="forget_class is for the class-forgetting scenario 'cf' only"):
        make_split("rb", 0, data_dir, profile="quick", forget_class=1)


def test_cf_reuses_rbs_original_model_and_scores_the_forgotten_class_apart(tmp_path, monkeypatch, data_dir, cf0):
    from unlearnlib.study import get_original, run_scenario
    q = profiles.PROFILES["quick"]
    monkeypatch.setitem(profiles.PROFILES, "quick", profiles.Profile(
        "quick", q.width, TrainConfig(epochs=2, batch_size=64, lr=0.05, augment=False), {"finetune": {"epochs": 1}}))
    rb_model, _, rb_meta = get_original("rb", 0, "quick", tmp_path, data_dir)
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    model, split, meta = get_original("cf", 0, "quick", tmp_path, data_dir)
    # loaded, not trained again: no new file, the same weights, and the CF split named in its metadata
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == files
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), rb_model.state_dict().values()))
    assert meta["split_fingerprint"] == cf0.fingerprint and meta["config_hash"] == rb_meta["config_hash"]
    rows = {r["method"]: r for r in run_scenario("cf", [0], "quick", methods=["finetune"], run_dir=tmp_path,
                                                 data_dir=data_dir, progress=False)}
    assert set(rows) == {"original", "retrain", "finetune"}
    ref = rows["retrain"]
    for r in rows.values():
        assert 0 <= r["test_forget_acc"] <= 1 and r["mia_nonmembers"].endswith("(test_forget)")
        assert math.isclose(r["gap_test_forget_acc"], abs(r["test_forget_acc"] - ref["test_forget_acc"]))
        assert math.isclose(r["avg_gap"], np.mean([abs(r[k] - ref[k]) for k in
                                                   ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")]))
    # Retrain never saw the class: it cannot predict it (no training label of the class)
    assert ref["forget_acc"] <= 0.05 and ref["test_forget_acc"] <= 0.05
    assert rows["original"]["forget_acc"] > ref["forget_acc"]


def test_report_sorts_by_avg_gap_after_retrain_and_bolds_the_best_method_per_column():
    from unlearnlib.report import mark_best, method_table
    # hand-made rows, one seed each: Retrain forget 50%, test 55%
    mk = lambda m, f, t, g, s: {"method": m, "seed": 0, "forget_acc": f, "test_acc": t, "avg_gap": g, "seconds": s}
    rows = [mk("original", 1.0, 0.60, 0.30, 1.0), mk("scrub", 0.40, 0.55, 0.05, 9.0),
            mk("finetune", 0.58, 0.50, 0.04, 3.0), mk("retrain", 0.50, 0.55, 0.0, 10.0)]
    table = method_table(rows, ["forget_acc", "test_acc", "avg_gap", "seconds"])
    assert [r["method"] for r in table] == ["retrain", "finetune", "scrub", "original"]
    marked = {r["method"]: r for r in mark_best(table, ["forget_acc", "test_acc", "avg_gap", "seconds"])}
    # forget: |58-50| = 8 beats |40-50| = 10 (lower is not better: closest to Retrain is);
    # test: SCRUB's 55 equals Retrain's; Avg. Gap and seconds: the smallest; never Retrain or Original
    assert marked["finetune"]["forget_acc"] == "**58.0**" and marked["scrub"]["forget_acc"] == "40.0"
    assert marked["scrub"]["test_acc"] == "**55.0**" and marked["finetune"]["test_acc"] == "50.0"
    assert marked["finetune"]["avg_gap"] == "**4.0**" and marked["finetune"]["seconds"] == "**3.000**"
    assert not any("**" in str(v) for m in ("retrain", "original") for v in marked[m].values())
    # the plain table (CSV) is not changed by marking
    assert all("**" not in str(v) for r in table for v in r.values())

"""Evaluation sanity on real data, attack input checks, and the results store."""
import os

import numpy as np
import pytest

from unlearnlib.methods import unlearn
from unlearnlib.metrics import attack_accuracy, evaluate, mia_loss_attack
from unlearnlib.results import DuplicateResult, ResultsStore, summarize, to_markdown


@pytest.mark.slow
def test_retrain_against_itself_has_zero_gap_and_chance_mia(rb_quick, retrain_rb):
    m = evaluate(retrain_rb.model, rb_quick, reference=retrain_rb.model)
    assert m["avg_gap"] == 0 and m["js_forget"] < 1e-6
    assert 0.3 <= m["mia_loss"] <= 0.7  # forget looks like unseen test data


@pytest.mark.slow
def test_original_has_larger_gap_and_mia_above_chance(rb_quick, original_rb, retrain_rb):
    m = evaluate(original_rb, rb_quick, reference=retrain_rb.model)
    assert m["avg_gap"] > 0.15 and m["mia_loss"] > 0.6 and m["forget_acc"] > 0.95
    assert m["js_forget"] > 0.05


@pytest.mark.slow
def test_over_forgetting_is_penalised(rb_quick, original_rb, retrain_rb):
    ref = evaluate(retrain_rb.model, rb_quick)
    over = unlearn("neggrad", original_rb, rb_quick, lr=0.05, epochs=3).model
    m = evaluate(over, rb_quick, reference=retrain_rb.model)
    assert m["forget_acc"] < ref["forget_acc"] - 0.15
    assert m["gap_forget_acc"] == pytest.approx(abs(m["forget_acc"] - ref["forget_acc"]))
    assert m["avg_gap"] > 0.05


@pytest.mark.slow
def test_identical_inputs_identical_metrics(rb_quick, original_rb, retrain_rb):
    a = evaluate(original_rb, rb_quick, reference=retrain_rb.model, seconds=2.0, reference_seconds=4.0)
    b = evaluate(original_rb, rb_quick, reference=retrain_rb.model, seconds=2.0, reference_seconds=4.0)
    assert a == b and a["cost_ratio"] == 0.5


def test_attack_input_errors():
    with pytest.raises(ValueError, match=r"must be 0 \(non-member\) or 1 \(member\), got \[0, 2\]"):
        attack_accuracy(np.zeros(10), np.array([0, 2] * 5))
    with pytest.raises(ValueError, match="too small to split"):
        attack_accuracy(np.zeros(4), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="non-empty"):
        mia_loss_attack([], [1.0, 2.0])


def test_attack_separates_separable_losses():
    assert mia_loss_attack(np.full(50, 0.01) + np.arange(50) * 1e-4, np.full(50, 3.0)) == 1.0


def _row(seed, **kw):
    return {"scenario": "rb", "method": "scrub", "seed": seed, "config_hash": "c", "split_fingerprint": f"f{seed}",
            "forget_acc": 0.5 + seed / 10, **kw}


def test_results_append_only_duplicates_and_crash(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "r.jsonl")
    store.append(_row(0))
    first = store.path.read_bytes()
    store.append(_row(1))
    assert store.path.read_bytes().startswith(first)
    with pytest.raises(DuplicateResult, match="already has a row"):
        store.append(_row(1))
    store.append(_row(1, forget_acc=0.9), replace=True)
    assert [r["forget_acc"] for r in store.rows()] == [0.5, 0.9]
    before = store.path.read_bytes()

    def crash(fd):
        raise OSError("power cut")
    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        store.append(_row(2))
    assert store.path.read_bytes() == before
    # no temporary file left behind (the lock file is filelock's persistent sidecar)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "r.jsonl.lock"]


def test_summarize_mean_std_n():
    rows = [_row(0, test_acc=0.60), _row(1, test_acc=0.70), _row(2, test_acc=0.80)]
    t = summarize(rows, ["test_acc"])
    assert t[0]["n"] == 3 and t[0]["test_acc_mean"] == pytest.approx(0.7)
    assert t[0]["test_acc_std"] == pytest.approx(0.1)
    assert t[0]["test_acc"] == "70.0 ± 10.0"
    md = to_markdown(t, ["method", "n", "test_acc"])
    assert md.splitlines()[2] == "| scrub | 3 | 70.0 ± 10.0 |"


def _append_many(path, writer, n):
    from unlearnlib.results import ResultsStore
    store = ResultsStore(path)
    for i in range(n):
        store.append({"scenario": "rb", "method": f"w{writer}", "seed": i, "config_hash": "h",
                      "split_fingerprint": "f", "value": i})


def test_two_processes_appending_to_one_store_lose_no_row(tmp_path):
    """Each of two processes appends 150 rows to the same results.jsonl: all 300 arrive."""
    import multiprocessing
    path = tmp_path / "results.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 150)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = ResultsStore(path).rows()
    assert len(rows) == 300
    assert {(r["method"], r["seed"]) for r in rows} == {(f"w{w}", i) for w in (0, 1) for i in range(150)}


def test_a_results_path_that_is_a_folder_fails_before_any_compute(tmp_path):
    from unlearnlib.study import run_scenario
    (tmp_path / "results.jsonl").mkdir()
    with pytest.raises(ValueError, match="exists but is not a file"):
        ResultsStore(tmp_path / "results.jsonl")
    with pytest.raises(ValueError, match="exists but is not a file"):  # before any data is read or model trained
        run_scenario("rb", [0], "quick", run_dir=tmp_path, data_dir=tmp_path / "no-data-here", progress=False)


def test_a_corrupt_line_is_named_and_repair_keeps_every_good_row(tmp_path):
    from unlearnlib.cli import main
    from unlearnlib.results import CorruptResults
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    for seed in range(3):
        store.append({"scenario": "rb", "method": "scrub", "seed": seed, "config_hash": "h", "split_fingerprint": "f"})
    good = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(good[0] + b'{"scenario": "rb", "meth\n' + good[1] + b"[1, 2]\n" + good[2])
    with pytest.raises(CorruptResults, match=r"results.jsonl: line 2 is not a JSON object \(2 bad line\(s\) in all\); "
                                             r"run `python -m unlearnlib repair-results"):
        store.rows()
    with pytest.raises(CorruptResults):  # never extended while corrupt
        store.append({"scenario": "rb", "method": "scrub", "seed": 9, "config_hash": "h", "split_fingerprint": "f"})
    assert main(["repair-results", str(path)]) == 0
    assert [r["seed"] for r in store.rows()] == [0, 1, 2]
    assert (tmp_path / "results.jsonl.bad").read_bytes() == b'{"scenario": "rb", "meth\n[1, 2]\n'


def test_cost_ratio_only_against_a_retrain_timed_alike(rb_quick):
    """``score`` sets a model's seconds against Retrain's only when both were timed under the same
    conditions (checkpoint ``timing``); otherwise the row keeps its seconds, gets a ``cost_note``,
    and the report's table says why its "× Retrain" is n/a."""
    from unlearnlib.models import build_model
    from unlearnlib.report import cost_footnote
    from unlearnlib.study import SeedModels, score
    net = build_model("resnet18", 10, 0.125, rb_quick.mean, rb_quick.std).eval()
    alone, worker = {"threads": 2, "processes": 1}, {"threads": 1, "processes": 3}
    made = {"dataset": rb_quick.dataset, "num_classes": 10, "split_fingerprint": rb_quick.fingerprint}
    s = SeedModels(rb_quick, net, {**made, "seconds": 8.0, "timing": worker}, net,
                   {**made, "seconds": 20.0, "timing": worker}, {}, False)
    same = score(s, net, {**made, "seconds": 5.0, "timing": worker})
    assert same["cost_ratio"] == 0.25 and "cost_note" not in same and same["timing"] == worker
    other = score(s, net, {**made, "seconds": 5.0, "timing": alone})
    assert "cost_ratio" not in other and other["seconds"] == 5.0
    assert other["cost_note"] == ("Retrain timed with 1 thread(s) in one of 3 process(es) training at once, "
                                  "this model with 2 thread(s) in one of 1 process(es) training at once: no ratio")
    note = cost_footnote([same, other], ["seconds", "cost_ratio"])
    assert note.startswith("\n× Retrain is n/a for 1 of 2 rows") and other["cost_note"] in note
    assert cost_footnote([same], ["seconds", "cost_ratio"]) == "" and cost_footnote([other], ["seconds"]) == ""

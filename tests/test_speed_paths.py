"""The speed paths give the same answers as the plain ones: torch.compile'd forward passes
(with their feature taps) against eager, and seeds run concurrently against a sequential run."""
import dataclasses
from pathlib import Path

import pytest
import torch

from unlearnlib.checkpoints import load_checkpoint
from unlearnlib.methods import unlearn
from unlearnlib.forward import Forward
from unlearnlib.runtime import batch_sizes


def _small(split, n_retain=64, n_forget=32):
    # batch sizes that divide the sets: each loop compiles one shape (CPU compilation is slow)
    return dataclasses.replace(split, retain=split.retain.subset(range(n_retain)),
                               forget=split.forget.subset(range(n_forget)))


def test_batch_sizes():
    assert batch_sizes(100, 32) == {32, 4}
    assert batch_sizes(64, 32) == {32}
    assert batch_sizes(10, 32) == {10}


@pytest.mark.slow
def test_compiled_similarity_scrub_matches_eager(rb_quick, original_rb):
    """Similarity SCRUB taps layer4 through hooks; compiled, the hooks must still feed the loss."""
    split = _small(rb_quick)
    kw = dict(epochs=1, max_steps=1, lr=5e-3, seed=0, batch_size=32, forget_batch_size=32)  # one shape
    eager = unlearn("scrub_similarity", original_rb, split, **kw)
    comp = unlearn("scrub_similarity", original_rb, split, compile="default", **kw)
    assert eager.compile_seconds == 0.0 and comp.compile_seconds > 0
    assert comp.config["compile"] == "default"
    for a, b in zip(eager.history, comp.history):  # the same losses, step for step, to float noise
        assert a["max_loss"] == pytest.approx(b["max_loss"], rel=1e-3, abs=1e-4)
        assert a["min_loss"] == pytest.approx(b["min_loss"], rel=1e-3, abs=1e-4)
    moved = max((p - q).abs().max().item() for p, q in zip(eager.model.parameters(), original_rb.parameters()))
    diff = max((p - q).abs().max().item() for p, q in zip(eager.model.parameters(), comp.model.parameters()))
    assert moved > 1e-3 and diff < 1e-2 * moved, (moved, diff)
    with torch.no_grad():
        x = rb_quick.test.images[:256].float() / 255
        agree = (eager.model(x).argmax(1) == comp.model(x).argmax(1)).float().mean().item()
    assert agree > 0.97
    # the taps' hooks are gone once unlearning returns
    assert not any(m._forward_hooks for m in comp.model.modules())


def test_channels_last_config_gives_the_same_run_to_float_noise(rb_quick, original_rb):
    """``channels_last=True`` (paper-cpu's methods on a CPU) changes only the weights' memory
    format: the same SCRUB run as contiguous weights, step for step, to float noise; its config
    hash differs (last bits), and a config without it keeps the hash it had before the field."""
    from unlearnlib.config import hashable_config
    from unlearnlib.methods import method_config
    split = _small(rb_quick)
    kw = dict(epochs=2, max_steps=1, lr=5e-3, seed=0, batch_size=32, forget_batch_size=32)
    plain = unlearn("scrub_attention", original_rb, split, **kw)
    cl = unlearn("scrub_attention", original_rb, split, channels_last=True, **kw)
    assert cl.config["channels_last"] is True and plain.config["channels_last"] is False
    assert cl.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert [sorted(r) for r in plain.history] == [sorted(r) for r in cl.history]
    for a, b in zip(plain.history, cl.history):  # epoch 1: a max- and a min-step; epoch 2: a min-step
        for key in ("max_loss", "min_loss"):
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    moved = max((p - q).abs().max().item() for p, q in zip(plain.model.parameters(), original_rb.parameters()))
    diff = max((p - q).abs().max().item() for p, q in zip(plain.model.parameters(), cl.model.parameters()))
    assert moved > 1e-3 and diff < 1e-2 * moved, (moved, diff)  # as the compiled run's test above
    assert "channels_last" not in hashable_config(method_config("scrub", None, "rb"))
    assert hashable_config(method_config("scrub", None, "rb", channels_last=True))["channels_last"] is True


def test_eager_forward_taps_and_has_nothing_to_warm_up(rb_quick):
    from unlearnlib.models import build_model
    torch.manual_seed(0)
    m = build_model("resnet18", 10, 0.125).train()
    with Forward(m, ["layer4"], mode="off") as fwd:
        assert fwd.warmup(rb_quick.retain, {8}) == 0.0 and fwd.compile_seconds == 0.0
        logits, feats = fwd(rb_quick.retain.images[:4].float() / 255)
        assert logits.shape == (4, 10) and feats[0].shape == (4, 64, 4, 4)
    assert not any(mod._forward_hooks for mod in m.modules())
    with pytest.raises(ValueError, match="compile 'fast' is not one of off, default"):
        Forward(m, mode="fast")
    with pytest.raises(ValueError, match="compile 'fast' is not one of off, default"):
        unlearn("finetune", m, rb_quick, compile="fast")


@pytest.mark.slow
def test_compiled_warmup_compiles_and_restores_weights_statistics_and_gradients(rb_quick):
    """Warm-up runs forward and backward of every batch size through the compiled graph: the
    weights, the batch-norm statistics (which a train-mode forward updates) and the gradients
    must come back exactly as they were."""
    from unlearnlib.models import build_model
    torch.manual_seed(0)
    m = build_model("resnet18", 10, 0.125).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with Forward(m, ["layer4"], mode="default") as fwd:
        secs = fwd.warmup(rb_quick.retain, {8})  # one shape: inductor on the CPU is slow to compile
        assert secs > 0 and fwd.compile_seconds >= secs
        assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
        assert all(p.grad is None for p in m.parameters()) and m.training
        # and the compiled graph still records the tap
        logits, feats = fwd(rb_quick.retain.images[:8].float() / 255)
        assert logits.shape == (8, 10) and feats[0].shape == (8, 64, 4, 4)


@pytest.mark.slow
def test_concurrent_seeds_equal_a_sequential_run(tmp_path, data_dir):
    """Two seeds in two worker processes (the quick profile pools the methods too, on a CPU) give
    the very rows and weights of a sequential run with the same CPU threads per model
    (threads // 2), and the cost ratio to Retrain, both timed in the workers."""
    from unlearnlib.study import _pool_methods, run_scenario, worker_reports
    small = dict(train_overrides={"epochs": 3}, overrides={"finetune": {"epochs": 1}, "retrain": {"epochs": 3}},
                 progress=False, data_dir=data_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // 2))  # what each of the 2 workers gets
    try:
        seq = run_scenario("rb", [0, 1], "quick", methods=["finetune"], run_dir=tmp_path / "seq", **small)
    finally:
        torch.set_num_threads(threads)
    par = run_scenario("rb", [0, 1], "quick", methods=["finetune"], run_dir=tmp_path / "par", workers=2, **small)
    # the workers trained each seed's original and Retrain once, then Finetune per seed
    assert sorted((r["seed"], r["method"] or "") for r in worker_reports) == [
        (0, ""), (0, "finetune"), (1, ""), (1, "finetune")]
    again = run_scenario("rb", [0, 1], "quick", methods=["finetune"], run_dir=tmp_path / "par", workers=2, **small)
    assert worker_reports == [] and again == par  # every model stored: no pool is started
    assert _pool_methods("cuda") and not _pool_methods("cpu")  # on a GPU the methods go to the workers too
    assert _pool_methods("cpu", "paper-cpu") and _pool_methods("cpu", "quick")  # both run their methods eager
    from unlearnlib.methods import method_config
    from unlearnlib.profiles import PROFILES
    for m in PROFILES["paper-cpu"].methods:  # nothing pooled on a CPU compiles (every worker would compile)
        assert method_config(m, "paper-cpu", "rb").compile == "off", m
    assert len(seq) == len(par) == 2 * 3  # original, retrain, finetune per seed
    skip = {"seconds", "cost_ratio", "compile_seconds", "history", "git_commit", "timing", "cost_note"}
    ft = lambda rows: [r for r in rows if r["method"] == "finetune"]
    # Finetune and Retrain timed alike in each run (both in a worker of 2, or both here): a ratio
    assert all(r["cost_ratio"] > 0 and "cost_note" not in r for r in ft(seq) + ft(par))
    assert {r["timing"]["processes"] for r in ft(par)} == {2} and {r["timing"]["processes"] for r in ft(seq)} == {1}

    def strip(rows):
        return sorted(({k: v for k, v in r.items() if k not in skip} for r in rows),
                      key=lambda r: (r["seed"], r["method"]))
    assert strip(seq) == strip(par)
    for ck in (tmp_path / "seq" / "checkpoints").glob("*.safetensors"):
        a = load_checkpoint(ck)[0].state_dict()
        b = load_checkpoint(tmp_path / "par" / "checkpoints" / ck.name)[0].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), ck.name
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got 0"):
        run_scenario("rb", [0], "quick", run_dir=tmp_path / "x", workers=0, progress=False)
    with pytest.raises(ValueError, match="overrides for unknown method"):
        run_scenario("rb", [0], "quick", run_dir=tmp_path / "x", overrides={"scrubb": {}}, progress=False)


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_notebook_workers_parameter_is_checked(bad):
    from unlearnlib.notebook import check_parameters
    assert check_parameters({"workers": 3}, set(), {"workers"})["workers"] == 3
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got"):
        check_parameters({"workers": bad}, set(), {"workers"})


def test_notebook_workers_default_is_the_profiles():
    """``workers=None`` (the notebooks' default) resolves to the profile's ``workers``, which
    ``run-all`` passes too, so a notebook run by hand trains the same models as ``run-all``."""
    from unlearnlib.notebook import check_parameters
    from unlearnlib.profiles import PROFILES
    ns = {"workers": None, "profile": "quick"}
    assert check_parameters(ns, set(), {"workers", "profile"})["workers"] == PROFILES["quick"].workers == 3
    ns = {"workers": None, "profile": "paper"}
    assert check_parameters(ns, set(), {"workers", "profile"})["workers"] == PROFILES["paper"].workers == 1
    assert check_parameters({"workers": 2, "profile": "quick"}, set(), {"workers", "profile"})["workers"] == 2


def test_notebook_methods_parameter_defaults_to_every_default_method():
    from unlearnlib.methods import method_names
    from unlearnlib.notebook import check_parameters
    assert check_parameters({"methods": None}, set(), {"methods"})["methods"] == method_names(default_only=True)
    assert check_parameters({"methods": ["scrub"]}, set(), {"methods"})["methods"] == ["scrub"]
    with pytest.raises(ValueError, match="methods must be a non-empty list of"):
        check_parameters({"methods": ["scrubb"]}, set(), {"methods"})


def test_run_all_passes_each_notebook_the_profiles_execution_settings(tmp_path, monkeypatch):
    """run-all's papermill parameters, recorded instead of executed: the profile's workers (or
    ``--workers``) to the notebooks that train, the quick profile's one sweep seed to notebook 07,
    and no notebook 07 where the profile tunes in 02/03 (paper-cpu)."""
    import papermill
    from unlearnlib.cli import run_all
    calls = {}
    monkeypatch.setattr(papermill, "execute_notebook",
                        lambda src, out, parameters, **kw: calls.__setitem__(Path(src).stem, parameters))
    assert run_all("quick", str(tmp_path / "q"), None, None, None) == 0
    assert calls["07_sweep"]["seeds"] == [0] and "workers" not in calls["07_sweep"]
    assert all(calls[n]["workers"] == 3 for n in ("02_rb_cifar10", "03_rc_scrub", "04_loss_curves", "06_privacy",
                                                  "08_class_forgetting"))
    assert "seeds" not in calls["02_rb_cifar10"] and "workers" not in calls["01_train_original"]
    calls.clear()
    assert run_all("quick", str(tmp_path / "q"), None, [1], None, workers=1) == 0
    assert calls["02_rb_cifar10"]["workers"] == 1 and calls["02_rb_cifar10"]["seeds"] == [1]
    assert "seeds" not in calls["07_sweep"]  # the notebook's own seeds when --seeds is given
    calls.clear()
    assert run_all("paper-cpu", str(tmp_path / "p"), None, None, None) == 0
    assert "07_sweep" not in calls and calls["03_rc_scrub"]["workers"] == 3
    assert all("methods" not in p for p in calls.values())  # scope "all": every default method
    calls.clear()
    # --scope paper: the paper's seven methods in 02, 03 and 06 (the five after SCRUB left out), no 08
    assert run_all("paper-cpu", str(tmp_path / "p"), None, None, None, scope="paper") == 0
    seven = ["retrain", "finetune", "neggrad", "neggrad_plus", "scrub", "scrub_attention", "scrub_similarity"]
    assert all(calls[n]["methods"] == seven for n in ("02_rb_cifar10", "03_rc_scrub", "06_privacy"))
    assert "08_class_forgetting" not in calls and "methods" not in calls["04_loss_curves"]
    with pytest.raises(ValueError, match="scope 'tables' is not one of all, paper"):
        run_all("paper-cpu", str(tmp_path / "p"), None, None, None, scope="tables")

"""The robustness cases of the Guarantees section that other test files do not already cover."""
import dataclasses
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearnlib import profiles
from unlearnlib.checkpoints import CheckpointMismatch, load_checkpoint, save_checkpoint
from unlearnlib.methods import unlearn
from unlearnlib.metrics import evaluate
from unlearnlib.notebook import check_parameters
from unlearnlib.report import plot_distillation_types, plot_loss_curves, save_figure, save_table
from unlearnlib.results import ResultsStore
from unlearnlib.splits import make_split
from unlearnlib.config import TrainConfig
from unlearnlib.metrics import accuracy
from unlearnlib.runtime import set_deterministic


def test_checkpoint_of_another_split_refused_for_unlearning_and_evaluation(tmp_path, rb_quick, original_rb):
    other = make_split("rb", 1, profile="quick")
    path = save_checkpoint(tmp_path / "m.safetensors", original_rb, arch="resnet18", width=0.125, num_classes=10,
                           dataset="cifar10", split_fingerprint=other.fingerprint, seed=1)
    model, meta = load_checkpoint(path)
    with pytest.raises(CheckpointMismatch, match="refusing to unlearn"):
        unlearn("scrub", model, rb_quick, meta=meta)
    with pytest.raises(CheckpointMismatch, match="refusing to evaluate"):
        evaluate(model, rb_quick, meta=meta)
    # the same checkpoint is fine on its own split, and measured there
    row = evaluate(model, other, meta=meta)
    assert row["retain_acc"] == accuracy(model, other.retain) and row["test_acc"] == accuracy(model, other.test)
    # the metadata travels beside the model, never on it: a copy of it is not the checkpoint
    assert not hasattr(model, "unlearnlib_meta")


@pytest.mark.slow
@pytest.mark.parametrize("method,kw", [("scrub", dict(epochs=3, max_steps=2, lr=5e-3)),
                                       ("neggrad_plus", dict(epochs=3, alpha=0.9))])
def test_unlearning_resumes_after_a_kill_with_identical_weights(tmp_path, rb_quick, original_rb, method, kw):
    set_deterministic(True)
    try:
        full = unlearn(method, original_rb, rb_quick, **kw).model

        class Killed(Exception):
            pass

        def kill(epoch, row):
            if epoch == 2:
                raise Killed
        with pytest.raises(Killed):
            unlearn(method, original_rb, rb_quick, resume=tmp_path / "s.safetensors", on_epoch_end=kill, **kw)
        seen = []
        res = unlearn(method, original_rb, rb_quick, resume=tmp_path / "s.safetensors",
                      on_epoch_end=lambda e, r: seen.append(e), **kw)
        assert seen == [3] and len(res.history) == 3
        for a, b in zip(full.state_dict().values(), res.model.state_dict().values()):
            assert torch.equal(a, b)
    finally:
        set_deterministic(False)


@pytest.fixture
def tiny_profile(monkeypatch):
    """The quick profile with 2 training epochs, to exercise the study pipeline fast."""
    q = profiles.PROFILES["quick"]
    tiny = profiles.Profile("quick", q.width, TrainConfig(epochs=2, batch_size=64, lr=0.05, augment=False),
                            {"finetune": {"epochs": 1}})
    monkeypatch.setitem(profiles.PROFILES, "quick", tiny)
    return tiny


@pytest.mark.slow
def test_two_seeds_one_row_each_and_a_rerun_computes_nothing(tmp_path, tiny_profile):
    from unlearnlib.study import run_scenario
    rows = run_scenario("rb", [0, 1], "quick", methods=["finetune"], run_dir=tmp_path, progress=False)
    keys = sorted((r["seed"], r["method"]) for r in rows)
    assert keys == [(s, m) for s in (0, 1) for m in ("finetune", "original", "retrain")]
    assert len({r["split_fingerprint"] for r in rows}) == 2
    for r in rows:
        assert r["git_commit"] and r["versions"]["torch"] and r["device"] and r["config_hash"]
    store = tmp_path / "results.jsonl"
    before = store.read_bytes()
    ckpts = {p: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").iterdir()}
    run_scenario("rb", [0, 1], "quick", methods=["finetune"], run_dir=tmp_path, progress=False)
    assert store.read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").iterdir()} == ckpts
    # a third seed appends; the earlier rows stay byte-identical
    run_scenario("rb", [2], "quick", methods=["finetune"], run_dir=tmp_path, progress=False)
    assert store.read_bytes().startswith(before) and len(ResultsStore(store).rows()) == 9


def test_rendering_twice_is_byte_identical(tmp_path):
    rows = [{"scenario": "rb", "method": "scrub", "seed": s,
             "history": [{"epoch": 1, "max_loss": 0.1 * s, "min_loss": 1.0}, {"epoch": 2, "min_loss": 0.5}]}
            for s in range(3)]
    for folder in ("a", "b"):
        save_figure(plot_loss_curves(rows), tmp_path / folder, "curves")
        save_figure(plot_distillation_types(), tmp_path / folder, "kd")
        save_table([{"m": "x", "v": 1}], ["m", "v"], ["method", "value"], tmp_path / folder, "t")
    for name in ("curves.png", "curves.pdf", "kd.png", "kd.pdf", "t.md", "t.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_core_imports_without_gpu_captum_or_papermill(tmp_path):
    code = textwrap.dedent("""
        import sys
        sys.modules["captum"] = None; sys.modules["captum.attr"] = None; sys.modules["papermill"] = None
        import torch
        torch.cuda.is_available = lambda: False
        import unlearnlib.methods, unlearnlib.metrics, unlearnlib.study, unlearnlib.saliency, unlearnlib.cli
        from unlearnlib.losses import kd_kl
        print("core ok", float(kd_kl(torch.zeros(1, 2), torch.zeros(1, 2))))
        try:
            unlearnlib.saliency.attribute(None, torch.zeros(1, 3, 4, 4), torch.zeros(1, dtype=torch.long))
        except ImportError as e:
            print("saliency:", e)
        print("run-all rc", unlearnlib.cli.run_all("quick", None, None, None, None))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "core ok 0.0" in out.stdout
    assert "saliency: saliency maps need captum: pip install captum" in out.stdout
    assert "run-all rc 2" in out.stdout and "run-all needs papermill" in out.stderr


DECLARED = {"scenario", "seed", "seeds", "profile"}


@settings(max_examples=60, deadline=None)
@given(scenario=st.one_of(st.sampled_from(["rb", "rc", "cf"]), st.text(max_size=5), st.integers()),
       seed=st.one_of(st.none(), st.integers(-3, 10**12), st.floats(allow_nan=True), st.text(max_size=3), st.booleans()),
       seeds=st.one_of(st.none(), st.lists(st.integers(-2, 5), max_size=3), st.text(max_size=3)),
       profile=st.one_of(st.sampled_from(["auto", "quick", "paper"]), st.text(max_size=5)),
       extra=st.one_of(st.none(), st.sampled_from(["sede", "scenaro", "_private"])))
def test_fuzz_notebook_parameters_give_values_or_value_error(scenario, seed, seeds, profile, extra):
    ns = {"scenario": scenario, "seed": seed, "seeds": seeds, "profile": profile}
    if extra:
        ns[extra] = 1
    try:
        p = check_parameters(ns, set(), DECLARED)
    except ValueError:
        return
    assert extra in (None, "_private")
    assert p["scenario"] in ("rb", "rc", "cf") and p["profile"] in ("quick", "paper")
    assert all(isinstance(s, int) and s >= 0 for s in p["seeds"]) and p["seeds"]


def test_notebook_parameters_hold_only_declared_public_names():
    ns = {"scenario": "rb", "seed": 1, "_before": set(), "_i3": "x"}
    p = check_parameters(ns, set(), {"scenario", "seed", "_before", "_i3"})
    assert p == {"scenario": "rb", "seed": 1}


def test_study_resumes_a_model_cut_off_mid_training(tmp_path, tiny_profile):
    from unlearnlib.study import get_original

    class Disconnected(Exception):
        pass

    def cut(epoch, row):
        if epoch == 1:
            raise Disconnected
    with pytest.raises(Disconnected):
        get_original("rb", 0, "quick", tmp_path, progress=cut)
    assert len(list((tmp_path / "checkpoints").glob("*.resume.safetensors"))) == 1
    seen = []
    _, _, meta = get_original("rb", 0, "quick", tmp_path, progress=lambda e, r: seen.append(e))
    assert seen == [2] and [h["epoch"] for h in meta["history"]] == [1, 2]
    assert not list((tmp_path / "checkpoints").glob("*.resume.safetensors"))


def test_one_seed_runs_never_overwrite_the_full_tables():
    full = check_parameters({"seeds": None, "seed": None, "profile": "quick"}, set(), {"seeds", "seed", "profile"})
    one = check_parameters({"seeds": None, "seed": 2, "profile": "quick"}, set(), {"seeds", "seed", "profile"})
    assert full["tag"] == "quick" and one["tag"] == "quick_seeds2"
    s1 = check_parameters({"seed": 1, "profile": "quick"}, set(), {"seed", "profile"})
    assert s1["tag"] == "quick_seed1"


def test_unlearnlib_seeds_sets_the_default_seeds_only(monkeypatch):
    """UNLEARNLIB_SEEDS (what the suite gives the notebooks nbmake runs) replaces the profile's seeds
    where a notebook's ``seeds`` is None; an explicit seed wins; a bad value is named."""
    names = {"seeds", "seed", "profile"}
    monkeypatch.delenv("UNLEARNLIB_SEEDS", raising=False)
    assert check_parameters({"seeds": None, "seed": None, "profile": "quick"}, set(), names)["seeds"] == [0, 1, 2]
    monkeypatch.setenv("UNLEARNLIB_SEEDS", "0,1")
    p = check_parameters({"seeds": None, "seed": None, "profile": "quick"}, set(), names)
    assert p["seeds"] == [0, 1] and p["tag"] == "quick_seeds0-1"
    assert check_parameters({"seeds": [2], "seed": None, "profile": "quick"}, set(), names)["seeds"] == [2]
    assert check_parameters({"seeds": None, "seed": 2, "profile": "quick"}, set(), names)["seeds"] == [2]
    for bad in ("0,x", "-1"):
        monkeypatch.setenv("UNLEARNLIB_SEEDS", bad)
        with pytest.raises(ValueError, match="UNLEARNLIB_SEEDS must be|seed must be a non-negative integer"):
            check_parameters({"seeds": None, "seed": None, "profile": "quick"}, set(), names)


@pytest.mark.slow
def test_a_new_original_model_invalidates_its_unlearned_models(tmp_path, tiny_profile, monkeypatch):
    from unlearnlib.study import run_scenario
    run_scenario("rb", [0], "quick", methods=["finetune"], run_dir=tmp_path, progress=False)
    first = {r["method"]: r["config_hash"] for r in ResultsStore(tmp_path / "results.jsonl").rows()}
    changed = profiles.Profile("quick", tiny_profile.width, TrainConfig(epochs=3, batch_size=64, lr=0.05, augment=False),
                               tiny_profile.methods)
    monkeypatch.setitem(profiles.PROFILES, "quick", changed)
    run_scenario("rb", [0], "quick", methods=["finetune"], run_dir=tmp_path, progress=False)
    rows = ResultsStore(tmp_path / "results.jsonl").rows()
    assert len(rows) == 6  # original, retrain and finetune were all redone for the new recipe
    second = {r["method"]: r["config_hash"] for r in rows[3:]}
    assert all(first[m] != second[m] for m in ("original", "retrain", "finetune"))


@pytest.mark.parametrize("argv,msg", [
    (["train", "--seed", "-1"], "seed must be a non-negative integer, got -1"),
    (["train", "--data-dir", "/no/such/folder"], "data_dir '/no/such/folder' is not a folder"),
    (["run-all", "--seeds", "0", "-2"], r"--seeds must be non-negative integers, got \[0, -2\]"),
    (["repair-results", "/no/such/results.jsonl"], "no results file at"),
])
def test_cli_bad_values_are_usage_errors_not_tracebacks(argv, msg, capsys):
    from unlearnlib.cli import main
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: python -m unlearnlib" in err and re.search(msg, err) and "Traceback" not in err


def test_a_damaged_checkpoint_in_a_run_folder_is_trained_again_with_a_warning(tmp_path, tiny_profile):
    from unlearnlib.study import get_original
    model, _, meta = get_original("rb", 0, "quick", tmp_path)
    (path,) = (tmp_path / "checkpoints").glob("*original.safetensors")
    raw = bytearray(path.read_bytes())
    raw[-200:] = bytes(b ^ 0xFF for b in raw[-200:])  # inside the tensor data
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match=f"checkpoint {path} is damaged.*training it again"):
        again, _, meta2 = get_original("rb", 0, "quick", tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert meta2["payload_sha256"] == meta["payload_sha256"]


def test_tuning_picks_by_validation_and_tuned_rows_reuse_the_grid(tmp_path, tiny_profile, monkeypatch):
    """tune() scores each grid point against Retrain on seed 0 and keeps the smallest validation
    Avg. Gap; the tuned rows of run_scenario then reuse the grid's stored rows (nothing new is
    trained for seed 0), and the returned rows carry their variant."""
    from unlearnlib.study import run_scenario, tune
    monkeypatch.setitem(profiles.PROFILES, "quick", dataclasses.replace(tiny_profile, tune={"lr_factors": {"rb": (1.0, 3.0)}}))
    # the 2-epoch tiny original is far from fitting, so every point's retain accuracy moves: no guard here
    picked = tune("rb", "quick", tmp_path, methods=["finetune"], progress=False, tolerance=1.0)
    grid = picked["finetune"]["grid"]
    assert [p for p, _ in grid] == [{"lr": 0.04}, {"lr": 0.12}]
    assert picked["finetune"]["avg_gap_val"] == min(g for _, g in grid)
    stored = ResultsStore(tmp_path / "results.jsonl").rows()
    assert sorted(r["variant"] for r in stored if r["method"] == "finetune") == ["grid", "grid"]
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    rows = run_scenario("rb", [0], "quick", methods=["finetune"], run_dir=tmp_path, progress=False,
                        overrides={"finetune": picked["finetune"]["overrides"]}, variant="tuned", tag_config=True)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ckpts
    assert {r["variant"] for r in rows} == {"tuned"} and len(rows) == 3
    ft = next(r for r in rows if r["method"] == "finetune")
    assert ft["avg_gap_val"] == picked["finetune"]["avg_gap_val"]


def test_tuning_falls_back_to_the_official_point_when_nothing_qualifies(tmp_path, tiny_profile, monkeypatch):
    """No grid point keeps retain accuracy: the tuned row repeats the official settings (reusing
    the official row's stored result), and the report says so."""
    from unlearnlib.report import describe_tuning
    from unlearnlib.study import run_tuned
    monkeypatch.setitem(profiles.PROFILES, "quick", dataclasses.replace(tiny_profile, tune={"lr_factors": {"rb": (1.0, 3.0)}}))
    with pytest.warns(RuntimeWarning, match="tuned row keeps the official settings"):
        picked, rows = run_tuned("rb", [0], "quick", tmp_path, methods=["finetune"], progress=False, tolerance=0.0)
    assert picked["finetune"]["overrides"] == {"lr": 0.04} and picked["finetune"]["fallback"]
    assert "official settings kept" in describe_tuning(picked)
    ft = next(r for r in rows if r["method"] == "finetune")
    assert ft["variant"] == "tuned" and ft["config"]["lr"] == 0.04
    assert ft["avg_gap_val"] == picked["finetune"]["avg_gap_val"]  # the grid's official point, not run again

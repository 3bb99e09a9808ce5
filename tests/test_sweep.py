"""Sweeps through local Ray on the quick profile (2-epoch original models to keep CI short)."""
import json

import pytest

from unlearnlib.results import ResultsStore
from unlearnlib.presets import PACKAGE_PRESETS, load_preset, write_presets
from unlearnlib.sweep import expand, load_grid, run_sweep, select_presets



SPEC = {"name": "t", "scenario": "rb", "profile": "quick",
        "grid": {"method": ["finetune", "scrub"], "lr": [0.001, 0.01], "seed": [0, 1]},
        "fixed": {"epochs": 1}, "train": {"epochs": 2}}


@pytest.mark.slow
def test_grid_2x2x2_runs_on_local_ray_then_nothing_new(tmp_path):
    s = run_sweep(SPEC, tmp_path, progress=False)
    assert (s["points"], s["ran"], s["failed"]) == (8, 8, 0)
    rows = ResultsStore(tmp_path / "results.jsonl").rows()
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    assert {(r["method"], r["config"]["lr"], r["seed"]) for r in rows} == {
        (m, lr, sd) for m in ("finetune", "scrub") for lr in (0.001, 0.01) for sd in (0, 1)}
    before = (tmp_path / "results.jsonl").read_bytes()
    again = run_sweep(SPEC, tmp_path, progress=False)
    assert (again["ran"], again["skipped"]) == (0, 8)
    assert (tmp_path / "results.jsonl").read_bytes() == before


@pytest.mark.slow
def test_interrupted_sweep_completes_exactly_the_missing_points(tmp_path):
    first = run_sweep(SPEC, tmp_path, progress=False, max_points=3)  # stands for a kill after 3 points
    assert first["ran"] == 3
    done = {(r["method"], r["config"]["lr"], r["seed"]) for r in ResultsStore(tmp_path / "results.jsonl").rows()}
    second = run_sweep(SPEC, tmp_path, progress=False)
    assert (second["ran"], second["skipped"]) == (5, 3)
    rows = ResultsStore(tmp_path / "results.jsonl").rows()
    keys = [(r["method"], r["config"]["lr"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys)) == 8 and done <= set(keys)


@pytest.mark.slow
def test_failing_point_is_recorded_and_others_complete(tmp_path):
    spec = {"name": "f", "scenario": "rb", "profile": "quick", "train": {"epochs": 2},
            "grid": {"method": ["scrub_attention"], "layers": [["layer4"], ["layer9"]], "seed": [0]},
            "fixed": {"epochs": 1}}
    s = run_sweep(spec, tmp_path, progress=False)
    assert (s["ran"], s["failed"]) == (2, 1)
    rows = {tuple(r["config"]["layers"]): r for r in ResultsStore(tmp_path / "results.jsonl").rows()}
    assert rows[("layer4",)]["status"] == "ok" and "avg_gap" in rows[("layer4",)]
    assert rows[("layer9",)]["status"] == "failed" and "unknown feature layer" in rows[("layer9",)]["error"]


def test_preset_selection_from_a_known_table(tmp_path, monkeypatch):
    def row(method, lr, seed, gap):  # the test-set Avg. Gap points the other way: it must not be read
        return {"scenario": "rb", "method": method, "seed": seed, "config_hash": f"{method}{lr}",
                "config": {"lr": lr}, "avg_gap_val": gap, "avg_gap": 1 - gap, "status": "ok"}
    rows = [row("scrub", 1e-3, 0, 0.10), row("scrub", 1e-3, 1, 0.12), row("scrub", 1e-2, 0, 0.05),
            row("scrub", 1e-2, 1, 0.21), row("finetune", 1e-2, 0, 0.3), row("finetune", 1e-1, 0, 0.2),
            row("retrain", 0.1, 0, 0.0), {**row("scrub", 1e-1, 0, 0.0), "status": "failed"}]
    presets = select_presets(rows, "rb")
    assert presets["scrub"]["overrides"] == {"lr": 1e-3} and presets["scrub"]["avg_gap_val"] == pytest.approx(0.11)
    assert presets["finetune"]["overrides"] == {"lr": 1e-1} and "retrain" not in presets
    monkeypatch.setenv("UNLEARNLIB_PRESETS", str(tmp_path))
    write_presets(presets, "rb-resnet18")
    assert json.loads((tmp_path / "rb-resnet18.json").read_text())["scrub"]["n_seeds"] == 2
    assert load_preset("rb-resnet18", "scrub") == {"lr": 1e-3}
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        load_preset("nope", "scrub")


@pytest.mark.parametrize("name", ["../escaped", "/abs/evil", "Upper", "a b", "", "x/../y"])
def test_preset_names_that_could_escape_are_refused(name, tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNLIB_PRESETS", str(tmp_path / "user"))
    with pytest.raises(ValueError, match="is not allowed: use lower-case letters, digits"):
        write_presets({"scrub": {"overrides": {"lr": 1e-3}}}, name)
    with pytest.raises(ValueError, match="is not allowed"):
        load_preset(name, "scrub")
    assert not (tmp_path / "user").exists() and not (tmp_path / "escaped.json").exists()


def test_presets_are_written_to_the_user_folder_never_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv("UNLEARNLIB_PRESETS", raising=False)
    monkeypatch.setenv("UNLEARNLIB_CACHE", str(tmp_path))
    shipped = sorted(p.name for p in PACKAGE_PRESETS.glob("*.json"))
    path = write_presets({"scrub": {"overrides": {"lr": 2e-3}}}, "mine")
    assert path == tmp_path / "presets" / "mine.json"
    assert sorted(p.name for p in PACKAGE_PRESETS.glob("*.json")) == shipped
    assert load_preset("mine", "scrub") == {"lr": 2e-3}
    assert load_preset("rb-resnet18-quick", "scrub") == {"lr": 0.005}  # the shipped one is still found
    (tmp_path / "presets" / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not readable JSON"):
        load_preset("broken", "scrub")


def test_bad_grids_fail_before_compute():
    with pytest.raises(ValueError, match="needs at least 'method' and 'seed'"):
        load_grid({"grid": {"lr": [1]}})
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['lrr'\]"):
        expand({"grid": {"method": ["scrub"], "lrr": [1], "seed": [0]}})
    with pytest.raises(ValueError, match="unknown sweep key"):
        load_grid({"grid": {"method": ["scrub"], "seed": [0]}, "grd": 1})


def test_points_carry_the_profile_values_a_preset_must_restore():
    pts = expand({"profile": "quick", "grid": {"method": ["neggrad_plus"], "lr": [0.01], "seed": [0]}})
    assert pts[0]["preset"] == {"alpha": 0.9, "lr": 0.01}


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_real_ray_head_trains_each_seed_once_and_workers_read_no_driver_files(tmp_path, data_dir):
    """`ray start --head` on the loopback address, then the README's command through RAY_ADDRESS.
    Each seed's original and Retrain are trained once (by one task) and reach every point through
    the object store: the driver's run folder is relative to the driver's working directory (a
    worker could not find it), holds no checkpoint written by a point, and all points of a seed
    report one and the same original model."""
    import ast
    import os
    import shutil
    import subprocess
    import sys
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
    port = _free_port()
    import secrets
    # Ray 2.59+ authenticates local clusters with a token: one shared secret for head and driver
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}", "UNLEARNLIB_DATA": str(data_dir),
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    (tmp_path / "grid.yaml").write_text(
        "name: cluster\nscenario: rb\nprofile: quick\ntrain: {epochs: 2}\nfixed: {epochs: 1}\n"
        "grid: {method: [neggrad], lr: [0.001, 0.01], seed: [0, 1]}\n")
    subprocess.run([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                    "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                   check=True, timeout=180, capture_output=True, env=env)
    try:
        def sweep():
            out = subprocess.run([sys.executable, "-m", "unlearnlib", "sweep", "grid.yaml", "--run-dir", "run"],
                                 cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            assert out.returncode == 0, out.stderr[-3000:]
            line = next(l for l in out.stdout.splitlines() if l.startswith("sweep cluster: "))
            return ast.literal_eval(line.split(": ", 1)[1])
        first = sweep()
        assert (first["ran"], first["failed"], first["trained_seeds"]) == (4, 0, [0, 1])
        rows = ResultsStore(tmp_path / "run" / "results.jsonl").rows()
        assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
        for seed in (0, 1):
            assert len({r["original_sha256"] for r in rows if r["seed"] == seed}) == 1
        assert {r["original_sha256"] for r in rows if r["seed"] == 0}.isdisjoint(
            {r["original_sha256"] for r in rows if r["seed"] == 1})
        assert sorted(p.name for p in (tmp_path / "run").rglob("*.safetensors")) == sorted(
            p.name for p in (tmp_path / "run" / "models").iterdir())  # only the driver's copy of the models
        assert len(list((tmp_path / "run" / "models").iterdir())) == 4
        again = sweep()
        assert (again["ran"], again["skipped"], again["trained_seeds"]) == (0, 4, [])
    finally:
        subprocess.run([ray_cli, "stop", "--force"], timeout=120, capture_output=True, env=env)


def test_sweep_reuses_the_report_runs_models_only_where_split_and_recipe_match(tmp_path, data_dir, monkeypatch):
    """``models_from``: the report run's original and Retrain go to the sweep as their exact bytes
    when the sweep trains at the profile's recipe on the same split; another recipe, another split
    or a damaged checkpoint give None (the sweep then trains them itself)."""
    import dataclasses
    import warnings

    from unlearnlib import profiles
    from unlearnlib.splits import make_split
    from unlearnlib.study import prepare_seed
    from unlearnlib.sweep import _run_payload
    quick = profiles.PROFILES["quick"]  # a 1-epoch recipe keeps the test short; the logic is the same
    monkeypatch.setitem(profiles.PROFILES, "quick", dataclasses.replace(quick, train=dataclasses.replace(quick.train, epochs=1)))
    prepare_seed("rb", 0, "quick", tmp_path, data_dir=data_dir)
    fp = make_split("rb", 0, data_dir, profile="quick").fingerprint
    point = {"scenario": "rb", "seed": 0, "profile": "quick", "train": {}, "split_fingerprint": fp}
    got = _run_payload(tmp_path, point, data_dir)
    ck = tmp_path / "checkpoints"
    assert got == {"original": (ck / "rb-quick-seed0-original.safetensors").read_bytes(),
                   "retrain": (ck / "rb-quick-seed0-retrain.safetensors").read_bytes(), "fingerprint": fp}
    assert _run_payload(None, point, data_dir) is None
    assert _run_payload(tmp_path, {**point, "train": {"epochs": 2}}, data_dir) is None   # another recipe
    assert _run_payload(tmp_path, {**point, "seed": 1,                                   # no models for seed 1
                                   "split_fingerprint": make_split("rb", 1, data_dir, profile="quick").fingerprint},
                        data_dir) is None
    assert _run_payload(tmp_path, {**point, "split_fingerprint": "0" * 64}, data_dir) is None
    monkeypatch.setitem(profiles.PROFILES, "quick", dataclasses.replace(quick, train=dataclasses.replace(quick.train, epochs=3)))
    assert _run_payload(tmp_path, point, data_dir) is None  # the profile's recipe changed: stale models
    monkeypatch.setitem(profiles.PROFILES, "quick", dataclasses.replace(quick, train=dataclasses.replace(quick.train, epochs=1)))
    raw = bytearray((ck / "rb-quick-seed0-retrain.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (ck / "rb-quick-seed0-retrain.safetensors").write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a probe is silent: the sweep trains the models itself
        assert _run_payload(tmp_path, point, data_dir) is None  # damaged: never sent

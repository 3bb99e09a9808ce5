"""The benchmark runs on the CPU and prints its figures (a smoke test: no timing assertions)."""
import json

import pytest
import torch

from unlearnlib.bench import main


@pytest.mark.slow
def test_bench_smoke_prints_and_appends(tmp_path, capsys):
    out = tmp_path / "bench.jsonl"
    earlier = json.dumps({"an": "earlier record"}) + "\n"
    out.write_text(earlier)
    assert main(["--smoke", "--no-study", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "images/s" in text and "x Retrain" in text
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and lines[0] + "\n" == earlier  # appended, not overwritten
    row = json.loads(lines[1])
    assert set(row["images_per_s"]) == {"128", "512"} and "scrub" in row["ratio_to_retrain"]
    assert row["compile"] == "off" and row["compile_seconds"]["scrub"] == 0.0 and row["threads"] >= 1


@pytest.mark.parametrize("route", ["module", "cli"])
def test_check_on_a_cpu_says_it_needs_a_gpu_before_any_compute(route, tmp_path, capsys, monkeypatch):
    """``python -m unlearnlib.bench ...`` and the issue's ``python -m unlearnlib bench --profile paper
    --check`` (the CLI hands every argument to bench, leading options included)."""
    from unlearnlib import bench, cli
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(bench, "throughput", lambda *a, **k: pytest.fail("computed before refusing"))
    args = ["--profile", "paper", "--check", "--out", str(tmp_path / "b.jsonl")]
    assert (bench.main(args) if route == "module" else cli.main(["bench", *args])) == 2
    out = capsys.readouterr().out
    assert "needs a CUDA GPU" in out and "'cpu'" in out and "--profile quick --check" in out
    assert "--profile paper-dry --check" in out
    assert not (tmp_path / "b.jsonl").exists()


def test_check_verdicts_against_the_targets():
    from unlearnlib.bench import check_lines, gpu_class
    assert [gpu_class(n) for n in ("NVIDIA H100 80GB HBM3", "NVIDIA H200", "Tesla T4", "NVIDIA A100-SXM4-40GB")] == \
        ["h100", "h100", "t4", "other"]
    fig = {"device": "NVIDIA H200", "study": {"seconds": 280.0}, "ratio_to_retrain": {"scrub": 0.4},
           "images_per_s": {"512": 61000.0}, "baseline_images_per_s": {"512": 20000.0}, "peak_memory_gb": 16.0}
    got = {c["name"].split(" (")[0]: c["passed"] for c in check_lines(fig)}
    assert got == {"whole study": True, "SCRUB / Retrain time": False, "training images/s, batch 512": True,
                   "peak GPU memory": False}
    assert "3.05x the eager fp32 baseline" in check_lines(fig)[2]["name"]
    t4 = check_lines({**fig, "device": "Tesla T4", "study": {"seconds": 1900.0}})
    assert [c["passed"] for c in t4] == [False, False, None, False]  # no images/s target on a T4
    cpu = check_lines({"device": "cpu (x86_64, 2 threads)", "study": {"seconds": 9.0}, "ratio_to_retrain": {"scrub": 0.2}})
    assert [c["passed"] for c in cpu] == [None, True]


def test_a_paper_dry_record_is_held_to_no_target():
    from unlearnlib.bench import check_lines
    fig = {"device": "NVIDIA H200", "profile": "paper-dry", "study": {"seconds": 400.0},
           "ratio_to_retrain": {"scrub": 0.2}, "images_per_s": {"512": 100.0}, "peak_memory_gb": 1.0}
    lines = check_lines(fig)
    assert len(lines) == 4 and all(c["passed"] is None and "dry run" in c["target"] for c in lines)
    assert [c["passed"] for c in check_lines({**fig, "profile": "paper"})] == [False, True, False, True]


def test_an_unfinished_study_is_a_lower_bound_failing_only_past_the_limit():
    from unlearnlib.bench import check_lines
    fig = {"device": "NVIDIA H200"}
    over = check_lines({**fig, "study": {"seconds": 415.0, "finished": False}})[0]
    assert over["passed"] is False and "lower bound" in over["name"]
    under = check_lines({**fig, "study": {"seconds": 200.0, "finished": False}})[0]
    assert under["passed"] is None  # stopped at 200 s: the whole study may or may not fit in 300 s


def test_a_sigterm_during_the_study_still_writes_the_record_and_the_checks(tmp_path, capsys, monkeypatch):
    """``timeout 500 python -m unlearnlib bench ...`` on a rented GPU: the figures measured before the
    signal are kept, the study is marked unfinished, and the SIGTERM handler is removed afterwards."""
    import os
    import signal
    from types import SimpleNamespace

    from unlearnlib import bench, methods, study
    monkeypatch.setattr(bench, "throughput", lambda *a, **k: (1000.0, 0.0))
    monkeypatch.setattr(study, "get_original", lambda *a, **k: (None, None, {"seconds": 2.0}))
    monkeypatch.setattr(methods, "unlearn", lambda m, *a, **k: SimpleNamespace(
        seconds=10.0 if m == "retrain" else 3.0, compile_seconds=0.0))
    calls = []

    def stopped_study(scenario, *a, **k):
        calls.append(scenario)
        os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(study, "run_scenario", stopped_study)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "b.jsonl"
    assert bench.main(["--profile", "quick", "--check", "--out", str(out)]) == 0
    assert signal.getsignal(signal.SIGTERM) == before and calls == ["rb"]
    row = json.loads(out.read_text())
    assert row["study"]["finished"] is False and row["study"]["scenarios_finished"] == []
    assert row["ratio_to_retrain"]["scrub"] == 0.3
    text = capsys.readouterr().out
    assert "study stopped (signal 15)" in text and "lower bound" in text and "[PASS] SCRUB / Retrain time" in text

"""The benchmark runs on the CPU and prints its figures (a smoke test: no timing assertions)."""
import json

import pytest

from unlearnlib.bench import main


@pytest.mark.slow
def test_bench_smoke_prints_and_appends(tmp_path, capsys):
    out = tmp_path / "bench.jsonl"
    assert main(["--smoke", "--no-study", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "images/s" in text and "x Retrain" in text
    row = json.loads(out.read_text().splitlines()[0])
    assert set(row["images_per_s"]) == {"128", "512"} and "scrub" in row["ratio_to_retrain"]
    assert row["compile"] == "off" and row["compile_seconds"]["scrub"] == 0.0 and row["threads"] >= 1
    assert main(["--smoke", "--no-study", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2  # appended, not overwritten

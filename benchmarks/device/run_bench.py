"""``python -m unlearnlib bench`` on a rented GPU with the ``.devdata`` folder of ``make_data.py``.

The only difference from ``python -m unlearnlib bench``: the CIFAR-10 archive there is the subset
archive, so its recorded sha256 (``cifar10-train-subset.sha256`` beside it) replaces the full
archive's in ``unlearnlib.data.SHA256`` and the loader verifies the subset against it. The patch is
at module level so that the study's spawned worker processes (``--workers``), which import this
script as their ``__mp_main__``, apply it too.

Usage (on the GPU machine): ``UNLEARNLIB_DATA=.devdata python benchmarks/device/run_bench.py --profile paper --check``
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import unlearnlib.data as _data  # noqa: E402

_sums = Path(os.environ["UNLEARNLIB_DATA"]) / "cifar10-train-subset.sha256"
_data.SHA256["cifar10-train.zip"] = _sums.read_text().split()[0]

if __name__ == "__main__":
    from unlearnlib.bench import main
    raise SystemExit(main(sys.argv[1:]))

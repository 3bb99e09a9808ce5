"""Append-only results: one JSON line per (scenario, method, seed, config hash, split fingerprint).

Appending rewrites the file atomically as the old bytes plus one new line, so earlier rows stay
byte-identical and a crash mid-write leaves the old file intact. Writers take a file lock
(``<file>.lock``, the ``filelock`` package) around read-check-write, so processes sharing a run
folder lose no row. A second row with the same key is refused unless ``replace=True``. A line
that is not a JSON object is an error naming the file and the line; :func:`repair_results`
(``python -m unlearnlib repair-results FILE``) keeps every good row and moves the bad lines to
``FILE.bad``. :func:`summarize` turns rows into mean +- std tables.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .io import atomic_write_bytes

__all__ = ["ResultsStore", "summarize", "to_markdown", "to_csv", "KEY", "DuplicateResult", "CorruptResults",
           "repair_results"]

KEY = ("scenario", "method", "seed", "config_hash", "split_fingerprint")


class DuplicateResult(ValueError):
    """A row with this key is already stored."""


class CorruptResults(ValueError):
    """A results file holds a line that is not a JSON object."""


def _key(row: dict) -> tuple:
    missing = [k for k in KEY if k not in row]
    if missing:
        raise ValueError(f"result row lacks key field(s) {missing}; a row needs {', '.join(KEY)}")
    return tuple(row[k] for k in KEY)


def _line(row: dict) -> bytes:
    return (json.dumps(row, sort_keys=True, allow_nan=True, default=str) + "\n").encode()


def _parse(path: Path, raw: bytes) -> list[tuple[int, bytes, dict | None]]:
    """(line number, line, row or None if not a JSON object) for every non-blank line."""
    out = []
    for i, line in enumerate(raw.splitlines(keepends=True), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            row = None
        out.append((i, line, row if isinstance(row, dict) else None))
    return out


class ResultsStore:
    """A JSON-lines results file. ``append(row)`` adds a row; ``rows()`` reads them all.

    A path that exists but is not a file (a folder) is refused here, before any compute."""

    def __init__(self, path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise ValueError(f"results file {str(self.path)!r} exists but is not a file; give a file path "
                             f"(the run folder holds results.jsonl)")

    def _raw(self) -> bytes:
        return self.path.read_bytes() if self.path.is_file() else b""

    def _lock(self):
        from filelock import FileLock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path) + ".lock")

    def rows(self) -> list[dict]:
        parsed = _parse(self.path, self._raw())
        bad = [i for i, _, row in parsed if row is None]
        if bad:
            raise CorruptResults(f"{self.path}: line {bad[0]} is not a JSON object ({len(bad)} bad line(s) in all); "
                                 f"run `python -m unlearnlib repair-results {self.path}` to keep the good rows "
                                 f"and move the bad lines to {self.path}.bad")
        return [row for _, _, row in parsed]

    def has(self, **key) -> bool:
        want = tuple(key[k] for k in KEY)
        return any(_key(r) == want for r in self.rows())

    def get(self, **match) -> list[dict]:
        return [r for r in self.rows() if all(r.get(k) == v for k, v in match.items())]

    def append(self, row: dict, replace: bool = False) -> None:
        key = _key(row)
        line = _line(row)
        with self._lock():
            self._append(key, line, replace)

    def _append(self, key: tuple, new: bytes, replace: bool) -> None:
        self.rows()  # a corrupt file is refused, never extended
        raw = self._raw()
        lines = raw.splitlines(keepends=True)
        if raw and not raw.endswith(b"\n"):
            raise ValueError(f"{self.path} does not end with a newline: it was not written by unlearnlib")
        hits = [i for i, line in enumerate(lines) if line.strip() and _key(json.loads(line)) == key]
        if hits and not replace:
            raise DuplicateResult(f"{self.path} already has a row for {dict(zip(KEY, key))}; "
                                  f"pass replace=True to overwrite it")
        if hits:
            lines = [line for i, line in enumerate(lines) if i not in hits]
        atomic_write_bytes(self.path, b"".join(lines) + new)


def repair_results(path) -> tuple[int, int]:
    """Keep every good row of results file ``path`` (rewritten atomically) and move the lines that
    are not JSON objects to ``<path>.bad`` (appended). Returns ``(kept, moved)``."""
    store = ResultsStore(path)
    with store._lock():
        parsed = _parse(store.path, store._raw())
        good = [line if line.endswith(b"\n") else line + b"\n" for _, line, row in parsed if row is not None]
        bad = [line if line.endswith(b"\n") else line + b"\n" for _, line, row in parsed if row is None]
        if bad:
            bad_path = Path(str(store.path) + ".bad")
            atomic_write_bytes(bad_path, (bad_path.read_bytes() if bad_path.is_file() else b"") + b"".join(bad))
            atomic_write_bytes(store.path, b"".join(good))
    return len(good), len(bad)


def _fmt(mean: float, std: float, n: int, pct: bool) -> str:
    if math.isnan(mean):
        return "n/a"
    s = 100 if pct else 1
    d = 1 if pct else 3
    return f"{mean * s:.{d}f} ± {std * s:.{d}f}" if n > 1 else f"{mean * s:.{d}f}"


PERCENT = {"retain_acc", "forget_acc", "test_acc", "val_acc", "forget_true_acc", "mia_loss", "mia_efficacy",
           "mia_efficacy_val", "mia_efficacy_conf_entropy", "confusion_0_to_1", "confusion_1_to_0", "avg_gap",
           "avg_gap_5", "avg_gap_val", "test_forget_acc"} | {f"gap_{k}" for k in
           ("retain_acc", "forget_acc", "test_acc", "mia_loss", "mia_efficacy", "test_forget_acc")}


def summarize(rows: list[dict], metrics: list[str], by: tuple = ("scenario", "method"),
              order: list | None = None) -> list[dict]:
    """Group rows by ``by`` and give mean, sample std (ddof=1) and n of each metric per group.

    Output rows hold the group fields, ``n``, and for each metric ``m``: ``m_mean``, ``m_std``
    and the display string ``m`` (percent for accuracies and attacks, "mean ± std").
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    keys = list(groups)
    if order is not None:
        rank = {v: i for i, v in enumerate(order)}
        keys.sort(key=lambda k: (k[:-1], rank.get(k[-1], len(rank))))
    out = []
    for k in keys:
        g = groups[k]
        row = dict(zip(by, k))
        row["n"] = len(g)
        for m in metrics:
            vals = np.array([float(r[m]) for r in g if r.get(m) is not None], dtype=float)
            mean = float(np.mean(vals)) if len(vals) else math.nan
            std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            row[f"{m}_mean"], row[f"{m}_std"] = mean, std
            row[m] = _fmt(mean, std, len(vals), m in PERCENT)
        out.append(row)
    return out


def to_markdown(table: list[dict], columns: list[str], headers: list[str] | None = None) -> str:
    headers = headers or columns
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in table]
    return "\n".join(lines) + "\n"


def to_csv(table: list[dict], columns: list[str]) -> str:
    import csv
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(table)
    return buf.getvalue()

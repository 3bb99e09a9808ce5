"""Atomic file writes and provenance (git commit, versions, device).

Everything unlearnlib writes goes through :func:`atomic_write`: the bytes go to a temporary
file in the destination folder, are flushed and fsynced, then renamed over the target. A crash
or an exception in the middle leaves the previous file intact and no temporary file behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_write", "atomic_write_bytes", "git_commit", "versions", "config_hash"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file next to ``path``; on success rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


_GIT: str | None = None


def git_commit() -> str:
    """The commit of the unlearnlib checkout, ``+dirty`` if it has local changes, or ``unknown``."""
    global _GIT
    if _GIT is None:
        root = Path(__file__).resolve().parent.parent
        try:
            sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                 text=True, timeout=10, check=True).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=root, capture_output=True, text=True, timeout=10).stdout
            _GIT = sha + ("+dirty" if dirty.strip() else "")
        except (OSError, subprocess.SubprocessError):
            _GIT = "unknown"
    return _GIT


def versions() -> dict[str, str]:
    """Versions of the packages that decide a result."""
    import numpy
    import torch

    from . import __version__
    return {"unlearnlib": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def config_hash(obj) -> str:
    """A short sha256 of a JSON-able config (keys sorted), used as part of result keys."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]

"""Presets: named sets of per-method overrides chosen by a sweep (``sweep.select_presets``).

A preset is a JSON file ``{method: {"overrides": {...}, "avg_gap": ..., ...}}``. Names are
``[a-z0-9_-]+``. Presets are read from the user folder (``UNLEARNLIB_PRESETS``, default
``<cache>/presets``), then from the presets shipped in the package; they are only ever written
to the user folder. An explicit path ending in ``.json`` is read as it is.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .io import atomic_write_bytes

__all__ = ["load_preset", "write_presets", "preset_dirs", "validate_preset_name"]

_NAME = re.compile(r"^[a-z0-9_-]+$")
PACKAGE_PRESETS = Path(__file__).resolve().parent / "presets"


def validate_preset_name(name) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"preset name {name!r} is not allowed: use lower-case letters, digits, '_' "
                         f"and '-' only (or give a path ending in .json)")
    return name


def _user_dir() -> Path:
    from .data import cache_dir
    return Path(os.environ.get("UNLEARNLIB_PRESETS") or cache_dir() / "presets")


def preset_dirs() -> list[Path]:
    """Where presets are looked up, in order: the user folder, then the package's."""
    return [_user_dir(), PACKAGE_PRESETS]


def write_presets(presets: dict, name: str, folder=None) -> Path:
    """Write ``presets`` as ``<folder>/<name>.json`` (default: the user folder), atomically."""
    path = Path(folder or _user_dir()) / f"{validate_preset_name(name)}.json"
    atomic_write_bytes(path, (json.dumps(presets, indent=2, sort_keys=True) + "\n").encode())
    return path


def load_preset(name: str, method: str) -> dict:
    """The overrides that preset ``name`` (a name, or a path ending in .json) gives ``method``."""
    if isinstance(name, (str, os.PathLike)) and str(name).endswith(".json"):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"preset file {str(path)!r} does not exist")
    else:
        validate_preset_name(name)
        found = [d / f"{name}.json" for d in preset_dirs() if (d / f"{name}.json").is_file()]
        if not found:
            avail = sorted({p.stem for d in preset_dirs() if d.is_dir() for p in d.glob("*.json")})
            raise ValueError(f"unknown preset {name!r} (looked in {', '.join(map(str, preset_dirs()))}); "
                             f"available: {', '.join(avail) or 'none'}")
        path = found[0]
    try:
        presets = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"preset file {path} is not readable JSON ({e}); delete or rewrite it") from e
    if not isinstance(presets, dict) or not all(isinstance(v, dict) and isinstance(v.get("overrides"), dict)
                                                for v in presets.values()):
        raise ValueError(f"preset file {path} is not a preset: expected {{method: {{'overrides': {{...}}}}}}")
    if method not in presets:
        raise ValueError(f"preset {name!r} has no entry for method {method!r}; it has {', '.join(sorted(presets))}")
    return dict(presets[method]["overrides"])

"""Checkpoints as safetensors with metadata, checked against the caller's expectations on load.

Only safetensors files are read: a pickle (or any ``torch.load`` file) offered as a checkpoint
is refused without being unpickled, so it can run no code. Writes are atomic. Every checkpoint
carries the metadata that identifies its model (architecture, width, classes, data set, split
fingerprint) and the sha256 of its tensor payload, checked on every load: a damaged file is
refused, naming it.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch.nn as nn

from .io import atomic_write_bytes, git_commit, versions

__all__ = ["save_checkpoint", "load_checkpoint", "read_metadata", "check_model_split", "check_model_classes",
           "CheckpointMismatch", "CheckpointDamaged"]

REQUIRED = ("arch", "width", "num_classes", "dataset", "split_fingerprint")


class CheckpointMismatch(ValueError):
    """A checkpoint's metadata differs from what the caller expects."""


class CheckpointDamaged(ValueError):
    """A checkpoint's tensors do not match the checksum stored with them (or it has none)."""


def save_checkpoint(path, model: nn.Module, **meta) -> Path:
    """Save ``model``'s weights and ``meta`` (arch, width, num_classes, dataset, scenario, seed,
    split_fingerprint, method, ...). Provenance (package versions, git commit) is added."""
    from safetensors.torch import save
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"checkpoint metadata is missing {missing}; required: {', '.join(REQUIRED)}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    from .data import payload_digest
    meta = {**meta, "git_commit": git_commit(), "versions": versions(), "payload_sha256": payload_digest(tensors)}
    data = save(tensors, metadata={"unlearnlib": json.dumps(meta, sort_keys=True, default=str)})
    path = Path(path)
    atomic_write_bytes(path, data)
    return path


def read_metadata(path) -> dict:
    """The metadata of a safetensors checkpoint; refuses anything else without unpickling it."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        raise ValueError(f"{path} is not a safetensors checkpoint (it may be a pickle / torch.save "
                         f"file). unlearnlib never unpickles checkpoints; convert it with a "
                         f"trusted script to safetensors.")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("unlearnlib")
    except Exception as e:
        raise ValueError(f"{path} is not a readable safetensors checkpoint: {e}") from e
    if raw is None:
        raise ValueError(f"{path} has no unlearnlib metadata")
    return json.loads(raw)


def load_checkpoint(path, expect: dict | None = None, device="cpu") -> tuple[nn.Module, dict]:
    """Build the model described by the checkpoint and load its weights.

    ``expect`` maps metadata keys (dataset, num_classes, split_fingerprint, arch, width, ...) to
    the values the caller needs; any difference raises :class:`CheckpointMismatch` naming both.
    Returns ``(model, meta)``: the metadata travels beside the model, never on it (a copy of a
    model is not the model its metadata describes).
    """
    from safetensors.torch import load_file

    from .models import build_model
    meta = read_metadata(path)
    if expect:
        diffs = {k: (meta.get(k), v) for k, v in expect.items() if meta.get(k) != v}
        if diffs:
            text = "; ".join(f"{k}: checkpoint has {a!r}, this run needs {b!r}" for k, (a, b) in diffs.items())
            raise CheckpointMismatch(f"checkpoint {path} does not fit this run ({text})")
    from .data import payload_digest
    state = load_file(str(path))
    if meta.get("payload_sha256") is None:
        raise CheckpointDamaged(f"checkpoint {path} has no payload checksum (written by an older unlearnlib): "
                                f"train the model again, or delete the file")
    if payload_digest(state) != meta["payload_sha256"]:
        raise CheckpointDamaged(f"checkpoint {path} is damaged: its tensors do not match the sha256 stored "
                                f"with them; delete it (the study trains it again)")
    model = build_model(meta["arch"], meta["num_classes"], meta["width"])
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def check_model_split(meta: dict | None, split, action: str) -> None:
    """Refuse a model whose checkpoint metadata ``meta`` (from :func:`load_checkpoint`) says it
    was made on another split (fingerprint); ``unlearn(..., meta=)`` and ``evaluate(..., meta=)``
    call it."""
    if not meta or not hasattr(split, "fingerprint"):
        return
    if (meta.get("dataset"), meta.get("num_classes")) != (split.dataset, split.num_classes):
        raise CheckpointMismatch(
            f"refusing {action}: the model's checkpoint is a {meta.get('dataset')} model with "
            f"{meta.get('num_classes')} classes, but this split is {split.dataset} with {split.num_classes} classes")
    if meta.get("split_fingerprint") not in (None, split.fingerprint):
        raise CheckpointMismatch(
            f"refusing {action}: the model's checkpoint was made on split "
            f"{str(meta['split_fingerprint'])[:16]}… ({meta.get('dataset')}, {meta.get('num_classes')} classes, "
            f"seed {meta.get('seed')}, data {meta.get('data_source', 'not recorded')}), but this split is "
            f"{split.fingerprint[:16]}… ({split.dataset}, {split.num_classes} classes, seed {split.seed}, "
            f"data {getattr(split, 'data_source', '') or 'not recorded'})")


def check_model_classes(model, split, action: str) -> int | None:
    """Refuse a model whose output has another number of classes than ``split`` (one image, eval
    mode, no state change); works without any metadata. Returns the model's class count (None for
    an empty retain set)."""
    if len(split.retain) == 0:
        return None
    from .train import predict_logits
    got = predict_logits(model, split.retain.images[:1]).shape[1]
    n = getattr(split, "num_classes", None)
    if n is not None and got != n:
        raise CheckpointMismatch(f"refusing {action}: the model outputs {got} classes, but this split "
                                 f"({getattr(split, 'dataset', '?')}) has {n}")
    return got

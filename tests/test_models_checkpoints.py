"""Model shapes, feature taps, parameter count, and safe checkpoints."""
import os
import pickle

import pytest
import torch

from unlearnlib.checkpoints import CheckpointMismatch, load_checkpoint, read_metadata, save_checkpoint
from unlearnlib.io import atomic_write
from unlearnlib.models import FeatureTap, build_model, count_parameters, forward_with_features


def test_parameter_count_at_width_1():
    assert count_parameters(build_model("resnet18", 10, 1.0)) == 11_173_962


@pytest.mark.parametrize("size,classes", [(32, 10), (64, 20)])
def test_shapes_and_taps(size, classes):
    torch.manual_seed(0)
    m = build_model("resnet18", classes, 0.125).eval()
    x = torch.rand(2, 3, size, size)
    logits, feats = forward_with_features(m, x)
    assert logits.shape == (2, classes)
    assert [tuple(feats[n].shape) for n in ("layer1", "layer2", "layer3", "layer4")] == [
        (2, 8, size, size), (2, 16, size // 2, size // 2), (2, 32, size // 4, size // 4), (2, 64, size // 8, size // 8)]
    # taps never modify activations: same logits with and without hooks, and hooks are removed
    assert torch.equal(logits, m(x))
    assert all(not mod._forward_hooks for mod in m.modules())


def test_tap_records_the_tensor_the_next_layer_consumes():
    torch.manual_seed(0)
    m = build_model("resnet18", 10, 0.125).eval()
    x = torch.rand(2, 3, 32, 32)
    with FeatureTap(m, ["layer3"]) as tap:
        m(x)
        f3 = tap.features["layer3"].clone()
    assert torch.allclose(m.layer4(f3), m.layer4(tap.features["layer3"]))
    with pytest.raises(ValueError, match="unknown feature layer"):
        FeatureTap(m, ["layer9"])


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        build_model("vgg", 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet18", 1)


def _meta(**kw):
    return {"arch": "resnet18", "width": 0.125, "num_classes": 10, "dataset": "cifar10", "scenario": "rb",
            "seed": 0, "split_fingerprint": "abc", **kw}


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    m = build_model("resnet18", 10, 0.125).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", m, **_meta())
    m2, meta = load_checkpoint(path, expect={"dataset": "cifar10", "split_fingerprint": "abc"})
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(m(x), m2(x))
    assert meta["versions"]["torch"] == torch.__version__ and "git_commit" in meta


def test_cifar_checkpoint_refused_for_rc_naming_both_sides(tmp_path):
    m = build_model("resnet18", 10, 0.125)
    path = save_checkpoint(tmp_path / "m.safetensors", m, **_meta())
    with pytest.raises(CheckpointMismatch) as e:
        load_checkpoint(path, expect={"dataset": "tiny-imagenet-20", "num_classes": 20})
    msg = str(e.value)
    assert "dataset: checkpoint has 'cifar10', this run needs 'tiny-imagenet-20'" in msg
    assert "num_classes: checkpoint has 10, this run needs 20" in msg


def test_fingerprint_mismatch_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", build_model("resnet18", 10, 0.125), **_meta())
    with pytest.raises(CheckpointMismatch, match="split_fingerprint"):
        load_checkpoint(path, expect={"split_fingerprint": "def"})


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_offered_as_checkpoint_is_refused_and_never_run(tmp_path):
    target = tmp_path / "pwned.txt"
    evil = tmp_path / "model.safetensors"
    evil.write_bytes(pickle.dumps({"state": _Evil(str(target))}))
    with pytest.raises(ValueError, match="not a safetensors checkpoint"):
        load_checkpoint(evil)
    assert not target.exists()
    # a torch.save file (zip of pickles) too
    torch.save({"w": torch.ones(1), "evil": _Evil(str(target))}, tmp_path / "t.pt")
    with pytest.raises(ValueError):
        read_metadata(tmp_path / "t.pt")
    assert not target.exists()


def test_exception_while_saving_keeps_previous_file(tmp_path, monkeypatch):
    m = build_model("resnet18", 10, 0.125)
    path = save_checkpoint(tmp_path / "m.safetensors", m, **_meta())
    before = path.read_bytes()

    def fail(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, build_model("resnet18", 10, 0.125), **_meta(seed=5))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_atomic_write_exception_inside_block(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(p, "w") as f:
            f.write("half")
            raise RuntimeError("crash")
    assert p.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_bytes_flipped_inside_the_tensor_data_are_refused_on_load(tmp_path):
    """400 bytes flipped in the middle of the tensor payload: the stored sha256 no longer matches."""
    path = save_checkpoint(tmp_path / "m.safetensors", build_model("resnet18", 10, 0.125), **_meta())
    raw = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(raw[:8], "little")
    mid = header + (len(raw) - header) // 2
    raw[mid:mid + 400] = bytes(b ^ 0xFF for b in raw[mid:mid + 400])
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"checkpoint {path} is damaged: its tensors do not match the sha256"):
        load_checkpoint(path)


def test_identifying_metadata_is_mandatory(tmp_path):
    m = build_model("resnet18", 10, 0.125)
    with pytest.raises(ValueError, match=r"metadata is missing \['split_fingerprint'\]"):
        save_checkpoint(tmp_path / "m.safetensors", m, **{k: v for k, v in _meta().items() if k != "split_fingerprint"})


def test_a_20_class_model_is_refused_on_a_10_class_split_with_or_without_metadata(tmp_path, rb_quick):
    from unlearnlib.checkpoints import check_model_split
    from unlearnlib.methods import unlearn
    from unlearnlib.metrics import evaluate
    tiny = build_model("resnet18", 20, 0.125)
    path = save_checkpoint(tmp_path / "t.safetensors", tiny, **_meta(num_classes=20, dataset="tiny-imagenet-20"))
    model, meta = load_checkpoint(path)
    with pytest.raises(CheckpointMismatch, match="a tiny-imagenet-20 model with 20 classes, but this split is "
                                                 "cifar10 with 10 classes"):
        check_model_split(meta, rb_quick, "to unlearn")
    for call in (lambda: unlearn("finetune", model, rb_quick, epochs=1), lambda: evaluate(model, rb_quick)):
        with pytest.raises(CheckpointMismatch, match=r"the model outputs 20 classes, but this split \(cifar10\) has 10"):
            call()  # no metadata given: the model's own output width is checked

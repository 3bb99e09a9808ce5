"""An unlearning call either unlearns everything it was given, or fails before any compute.

A test-only method records the forget set its run function receives, so "every forget example
reached the method" is checked directly, without training."""
import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from unlearnlib.config import TrainConfig
from unlearnlib.methods import METHODS, Outcome, register, unlearn, unlearning
from unlearnlib.models import build_model
from unlearnlib.train import train

SEEN: list = []


@dataclasses.dataclass
class _RecordConfig:
    """Test only: records the sets it is given (after the paper's section 2 interface)."""
    epochs: int = 1


@pytest.fixture(scope="module", autouse=True)
def recorder():
    def run(model, sets, cfg, ctx):
        SEEN.append(sets.forget)
        return Outcome(model, [{"epoch": 1}])
    register("test_recorder", config=_RecordConfig, label="Recorder", order=9999,
             source="test only, records its input (paper section 2 interface)")(run)
    yield
    del METHODS["test_recorder"]


def _net(classes=3):
    torch.manual_seed(0)
    return build_model("resnet18", classes, 0.125).eval()


def _images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)


def _canonical(x):
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return sorted(t.numpy().tobytes() for t in (x * 255).round().to(torch.int32))


def _run(retain, forget, validation=None, net=None):
    SEEN.clear()
    validation = validation if validation is not None else retain
    unlearning(net or _net(), retain, forget, validation, method="test_recorder")
    return SEEN[-1]


def test_a_drop_last_loader_still_gives_every_forget_example():
    x, y = _images(60), torch.arange(60) % 3
    forget = DataLoader(TensorDataset(x[:60].float() / 255, y[:60]), batch_size=32, drop_last=True, shuffle=True)
    retain = (_images(20, seed=1), torch.arange(20) % 3)
    seen = _run(retain, forget)
    assert len(seen) == 60 and _canonical(seen.images) == _canonical(x)  # 28 would be lost to drop_last


@pytest.mark.parametrize("which", ["forget", "retain"])
def test_one_nan_pixel_is_refused_naming_the_set(which):
    sets = {"retain": (_images(10).float() / 255, torch.arange(10) % 3),
            "forget": (_images(6, seed=1).float() / 255, torch.arange(6) % 3)}
    sets[which][0][2, 1, 3, 4] = float("nan")
    with pytest.raises(ValueError, match=f"the {which} set has 1 non-finite pixel value"):
        _run(sets["retain"], sets["forget"])


@pytest.mark.parametrize("labels,msg", [
    (torch.tensor([0.0, 1.0, 2.7]), r"the forget labels must be whole class indices, got 1 others, e.g. \[2.7"),
    (torch.tensor([0.5, 1.0, 2.0]), "must be whole class indices"),
    (torch.tensor([-0.4, 1.0, 2.0]), "must be whole class indices"),
    (torch.tensor([0, 1, 3]), r"the forget labels must lie in \[0, 3\) for this 3-class model, got values from 0 to 3"),
    (torch.tensor([0, -1, 2]), r"must lie in \[0, 3\)"),
])
def test_labels_that_are_not_class_indices_of_the_model_are_refused(labels, msg):
    with pytest.raises(ValueError, match=msg):
        _run((_images(10), torch.arange(10) % 3), (_images(3, seed=1), labels))


def test_overlap_is_found_across_dtypes():
    x, y = _images(10), torch.arange(10) % 3
    with pytest.raises(ValueError, match="3 forget examples also appear in the retain set"):
        _run((x, y), (x[:3].float() / 255, y[:3]))  # uint8 retain, the same images as floats in [0, 1]


def test_a_resume_file_only_continues_the_run_that_wrote_it(tmp_path, rb_quick, original_rb):
    """A resume file written for model A, offered while training or unlearning model B with the
    same config, is refused (the key covers the data and the starting weights)."""
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, augment=False)
    x, y = rb_quick.retain.images[:128], rb_quick.retain.labels[:128]

    class Killed(Exception):
        pass

    def kill(epoch, row):
        raise Killed
    torch.manual_seed(1)
    a = build_model("resnet18", 10, 0.125)
    with pytest.raises(Killed):
        train(a, x, y, cfg, seed=0, resume=tmp_path / "t.safetensors", on_epoch_end=kill)
    torch.manual_seed(2)
    with pytest.raises(ValueError, match="belongs to another run"):
        train(build_model("resnet18", 10, 0.125), x, y, cfg, seed=0, resume=tmp_path / "t.safetensors")
    with pytest.raises(ValueError, match="belongs to another run"):  # same weights, other data
        train(a, rb_quick.retain.images[128:256], y, cfg, seed=0, resume=tmp_path / "t.safetensors")
    with pytest.raises(Killed):
        unlearn("finetune", original_rb, rb_quick, epochs=2, resume=tmp_path / "u.safetensors", on_epoch_end=kill)
    other = unlearn("finetune", original_rb, rb_quick, epochs=1).model  # another starting model
    with pytest.raises(ValueError, match="belongs to another run"):
        unlearn("finetune", other, rb_quick, epochs=2, resume=tmp_path / "u.safetensors")


class _ListDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _wrap(kind, x, y, batch, drop_last, base_len):
    if kind == "tuple":
        return (x, y)
    if kind == "tensor_dataset":
        return TensorDataset(x, y)
    if kind == "list_dataset":
        return _ListDataset(x, y)
    if kind == "subset":
        pad = torch.zeros((base_len,) + tuple(x.shape[1:]), dtype=x.dtype)
        pad_y = torch.zeros(base_len, dtype=y.dtype)
        full = TensorDataset(torch.cat([x, pad]), torch.cat([y, pad_y]))
        return Subset(full, list(range(len(x))))
    return DataLoader(TensorDataset(x, y), batch_size=batch, drop_last=drop_last, shuffle=len(x) > 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_forget=st.integers(0, 9), n_retain=st.integers(0, 9), dtype=st.sampled_from(["uint8", "float32", "float64"]),
       kind_f=st.sampled_from(["tuple", "tensor_dataset", "list_dataset", "subset", "loader"]),
       kind_r=st.sampled_from(["tuple", "tensor_dataset", "subset", "loader"]),
       batch=st.integers(1, 8), drop_last=st.booleans(), nan=st.booleans(), overlap=st.booleans(),
       label_kind=st.sampled_from(["int", "float_whole", "float_frac", "out_of_range"]))
def test_fuzz_kit_inputs_unlearn_every_forget_example_or_raise(n_forget, n_retain, dtype, kind_f, kind_r, batch,
                                                              drop_last, nan, overlap, label_kind):
    xf, xr = _images(n_forget, seed=1), _images(n_retain, seed=2)
    if overlap and n_forget and n_retain:
        xf[0] = xr[0]
    yf, yr = torch.arange(n_forget) % 3, torch.arange(n_retain) % 3
    if label_kind == "float_whole":
        yf = yf.float()
    elif label_kind == "float_frac" and n_forget:
        yf = yf.float() + 0.5
    elif label_kind == "out_of_range" and n_forget:
        yf = yf + 3
    if dtype != "uint8":
        xf, xr = xf.to(getattr(torch, dtype)) / 255, xr.to(getattr(torch, dtype)) / 255
        if nan and n_forget:
            xf[0, 0, 0, 0] = float("nan")
    forget = _wrap(kind_f, xf, yf, batch, drop_last, base_len=2)
    retain = _wrap(kind_r, xr, yr, batch, drop_last, base_len=3)
    try:
        seen = _run(retain, forget, validation=(xr, yr))
    except ValueError:
        return
    # it ran: every forget example, exactly once each, reached the method with its label
    assert n_forget > 0 and n_retain > 0 and not (overlap and n_retain)
    assert not (nan and dtype != "uint8") and label_kind not in ("float_frac", "out_of_range")
    assert _canonical(seen.images) == _canonical(xf)
    assert sorted(seen.labels.tolist()) == sorted(yf.long().tolist())

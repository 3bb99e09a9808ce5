"""The precision policy (issue 17): bf16 on compute capability 8+, fp16 with a gradient scaler on
7.x (Colab's T4), fp32 elsewhere; the scaler's code path on the CPU."""
import torch
import torch.nn as nn
import torch.nn.functional as F
import pytest

from unlearnlib.config import TrainConfig, check_config
from unlearnlib.data import LabelledImages
from unlearnlib.models import build_model
from unlearnlib.runtime import autocast, make_generator, make_scaler, precision
from unlearnlib.train import fit, run_epoch, train


@pytest.mark.parametrize("capability, expected", [((9, 0), "bf16"), ((8, 0), "bf16"), ((8, 6), "bf16"),
                                                  ((7, 5), "fp16"), ((7, 0), "fp16"), ((6, 1), "fp32")])
def test_auto_precision_follows_the_gpu_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert precision(torch.device("cuda"), True, "auto") == expected
    assert precision(torch.device("cuda"), False, "auto") == "fp32"  # fast path off: fp32
    for explicit in ("bf16", "fp16", "fp32"):
        assert precision(torch.device("cuda"), True, explicit) == explicit


def test_cpu_is_fp32_unless_asked_and_fp16_is_an_accepted_choice():
    assert precision("cpu", True, "auto") == "fp32" and make_scaler("cpu", True, "auto") is None
    assert isinstance(make_scaler("cpu", True, "fp16"), torch.amp.GradScaler)
    check_config(TrainConfig(amp="fp16"))
    with pytest.raises(ValueError, match="amp"):
        check_config(TrainConfig(amp="fp8"))
    lin = nn.Linear(4, 2)
    for amp, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32)):
        with autocast(torch.device("cpu"), True, amp):
            assert lin(torch.ones(1, 4)).dtype == dtype


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(1)
    data = LabelledImages(torch.rand(20, 3, 2, 2, generator=g), torch.randint(0, 3, (20,), generator=g))
    return model, data


@pytest.mark.parametrize("sign", [1.0, -1.0])  # -1: SCRUB's max-step ascends a negated loss
def test_scaled_and_unscaled_steps_give_the_same_weights(sign):
    runs = []
    for scaler in (None, torch.amp.GradScaler("cpu")):
        model, data = _tiny()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

        def objective(m, b, _):
            loss = sign * F.cross_entropy(m(b.x), b.y)
            return loss, loss
        out = run_epoch(model, opt, data, 4, objective, make_generator(0, torch.device("cpu")), scaler=scaler)
        runs.append((model.state_dict(), float(out["loss"])))
    (a, la), (b, lb) = runs
    assert la == lb
    assert all(torch.equal(a[k], b[k]) for k in a)  # powers of two scale and unscale exactly


def test_an_overflowing_step_is_skipped_and_is_not_a_divergence():
    model, data = _tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    calls = []

    def objective(m, b, _):
        calls.append(1)
        loss = F.cross_entropy(m(b.x), b.y) * (float("inf") if len(calls) == 1 else 1.0)
        return loss, loss

    gen = make_generator(0, torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history, diverged = fit(model, opt, 1, lambda e: run_epoch(model, opt, data, 4, objective, gen, scaler=scaler), gen)
    assert not diverged and history[0]["skipped"] == 1 and history[0]["steps"] == 5
    assert torch.isfinite(torch.tensor(history[0]["loss"]))
    assert scaler.get_scale() < 65536.0  # the scale was lowered after the overflow
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # the other 4 steps moved


def test_fp16_training_runs_on_the_cpu_with_its_scaler():
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 0.0625)
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(16) % 10
    before = [p.detach().clone() for p in model.parameters()]
    history = train(model, images, labels, TrainConfig(epochs=1, batch_size=8, lr=0.01, augment=False, amp="fp16"))
    assert len(history) == 1 and torch.isfinite(torch.tensor(history[0]["loss"])) and "skipped" in history[0]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_resumed_fp16_run_continues_with_its_gradient_scalers_state(tmp_path):
    """The resume file keeps the loss scale and growth tracker: a run cut off after epoch 1 goes on
    with the scale it had reached, not with a fresh scaler's 65536."""
    from unlearnlib.train import fit
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=3)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))

    def epoch_fn(epoch, scaler=scaler):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return {"loss": loss.detach()}

    resume = tmp_path / "run.resume.safetensors"
    fit(model, opt, 2, epoch_fn, torch.Generator().manual_seed(0), resume=resume, resume_key="k", scaler=scaler)
    state = scaler.state_dict()
    assert state["_growth_tracker"] == 2 and state["scale"] == 2.0 ** 10  # two good steps, no growth yet
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, growth_interval=3)
    _ = fresh.scale(torch.ones(()))  # initialise its lazy state
    start, history = __import__("unlearnlib.train", fromlist=["_load_resume"])._load_resume(
        resume, model, opt, (torch.Generator(),), "k", fresh)
    assert start == 2 and len(history) == 2
    assert fresh.state_dict()["scale"] == 2.0 ** 10 and fresh.state_dict()["_growth_tracker"] == 2

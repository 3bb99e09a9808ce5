"""The methods that came after SCRUB (issue 16), each on its defining behaviour with a small
hand-checkable case: Random Labels, SalUn, SSD, Bad Teacher, l1-sparse."""
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnlib.data import LabelledImages
from unlearnlib.methods import method_config, unlearn
from unlearnlib.methods.bad_teacher import bad_teacher_targets, incompetent_teacher
from unlearnlib.methods.base import Context, Sets
from unlearnlib.methods.l1_sparse import l1_penalty
from unlearnlib.methods.random_labels import relabel_other_classes
from unlearnlib.methods.salun import run_salun, salun_mask
from unlearnlib.methods.ssd import dampen, importance, run_ssd


def _tiny(seed=0, classes=3, bias=True):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8, bias=bias), nn.ReLU(), nn.Linear(8, classes, bias=bias))


def _data(n, seed, classes=3, zeros=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 3, 2, 2) if zeros else torch.rand(n, 3, 2, 2, generator=g)
    return LabelledImages(x, torch.randint(0, classes, (n,), generator=g))


def test_random_labels_always_differ_from_the_true_label_and_cover_the_others():
    labels = torch.arange(10).repeat(300)
    new = relabel_other_classes(labels, 10, torch.Generator().manual_seed(0))
    assert (new != labels).all() and new.min() >= 0 and new.max() <= 9
    for c in range(10):  # every other class is drawn, none favoured much (uniform: 1/9 each)
        counts = torch.bincount(new[labels == c], minlength=10).float()
        assert counts[c] == 0 and (counts[torch.arange(10) != c] > 15).all()
    with pytest.raises(ValueError, match="at least 2 classes"):
        relabel_other_classes(labels, 1, torch.Generator())


def test_salun_mask_keeps_the_top_share_by_forget_gradient_and_only_those_weights_move():
    model = _tiny()
    forget, retain = _data(8, 1), _data(24, 2)
    mask = salun_mask(model, forget, batch_size=3, fraction=0.5, fast=False)
    # by hand: |sum over the batches of 3 of grad(-CE)|, ranked over every weight together
    grads = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for s in range(0, 8, 3):
        model.zero_grad()
        (-F.cross_entropy(model(forget.images[s:s + 3]), forget.labels[s:s + 3])).backward()
        for n, p in model.named_parameters():
            grads[n] += p.grad
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    total = sum(p.numel() for p in model.parameters())
    assert sum(int(m.sum()) for m in mask.values()) == total // 2
    threshold = flat.sort(descending=True).values[total // 2 - 1]
    for n, g in grads.items():
        assert (g.abs()[mask[n].bool()] >= threshold).all() and (g.abs()[~mask[n].bool()] <= threshold).all()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = method_config("salun", epochs=2, batch_size=4, lr=0.1, mask_batch_size=3, fast=False)
    out = run_salun(model, Sets(retain, forget, retain), cfg, Context(seed=0))
    moved = 0
    for n, p in out.model.named_parameters():
        off = ~mask[n].bool()
        assert torch.equal(p.detach()[off], before[n][off])  # momentum and weight decay included
        moved += int((p.detach()[~off] != before[n][~off]).sum())
    assert moved > 0


def test_ssd_dampens_by_the_formula_and_leaves_weights_without_forget_importance():
    lin = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
    g = {"weight": torch.tensor([[1.0, 1.0, 2.0]])}
    f = {"weight": torch.tensor([[5.0, 20.0, 0.0]])}
    share = dampen(lin, g, f, alpha=10.0, lam=1.0)
    # only the second exceeds 10x its global importance: scaled by 1 * 1 / 20
    assert torch.allclose(lin.weight, torch.tensor([[1.0, 0.1, 3.0]])) and share == pytest.approx(1 / 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
    dampen(lin, g, {"weight": torch.tensor([[0.0, 100.0, 0.0]])}, alpha=10.0, lam=200.0)
    assert torch.equal(lin.weight, torch.tensor([[1.0, 2.0, 3.0]]))  # beta = 200 * 1 / 100 > 1: capped at 1
    # importance is the batch-mean squared gradient (one batch here: the gradient squared)
    model, data = _tiny(), _data(6, 3)
    imp = importance(model, data, batch_size=6, fast=False)
    model.zero_grad()
    F.cross_entropy(model(data.images), data.labels).backward()
    assert all(torch.allclose(imp[n], p.grad.pow(2)) for n, p in model.named_parameters())
    # a forget set of black images gives a bias-free network zero forget importance: nothing changes
    model = _tiny(bias=False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = run_ssd(model, Sets(_data(20, 4), _data(5, 5, zeros=True), _data(5, 6)),
                  method_config("ssd", batch_size=5, fast=False), Context(seed=0))
    assert all(torch.equal(p, before[n]) for n, p in out.model.named_parameters())
    assert out.history[0]["dampened"] == 0.0


def test_bad_teacher_uses_the_incompetent_teacher_on_forget_and_the_competent_on_retain():
    competent = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    incompetent = torch.tensor([[torch.log(torch.tensor(3.0)), 0.0], [2.0, 0.0]])
    t = bad_teacher_targets(competent, incompetent, torch.tensor([True, False]), T=1.0)
    assert torch.allclose(t, torch.tensor([[0.75, 0.25], [0.5, 0.5]]))
    # the loss is the official F.kl_div(log_softmax(student / T), teacher) with its "mean" reduction
    student = torch.tensor([[0.3, -0.2], [1.0, 0.5]])
    ours = (torch.xlogy(t, t) - t * F.log_softmax(student, 1)).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.allclose(ours, F.kl_div(F.log_softmax(student, 1), t, reduction="mean"))
    model = _tiny()
    bad, again = incompetent_teacher(model, 3), incompetent_teacher(model, 3)
    assert all(torch.equal(a, b) for a, b in zip(bad.parameters(), again.parameters()))  # seeded
    assert not any(torch.equal(a, b) for a, b in zip(bad.parameters(), model.parameters()))  # re-initialised
    sets = Sets(_data(40, 7), _data(10, 8), _data(10, 9))
    res = unlearn("bad_teacher", model, sets, method_config("bad_teacher", batch_size=8, fast=False), seed=0)
    assert len(res.history) == 1 and torch.isfinite(torch.tensor(res.history[0]["loss"]))


def test_l1_penalty_gradient_is_gamma_times_sign():
    model = _tiny()
    l1_penalty(model, 0.3).backward()
    for p in model.parameters():
        assert torch.allclose(p.grad, 0.3 * torch.sign(p.detach()))
    with torch.no_grad():
        total = sum(p.abs().sum() for p in model.parameters())
    assert torch.allclose(l1_penalty(model, 0.3), 0.3 * total)


def test_the_after_scrub_methods_run_by_default_and_default_false_makes_a_method_opt_in(capsys, monkeypatch):
    """The five methods after SCRUB are in the report series (tables, notebooks 02-08, ``bench``
    runs the paper's seven only); ``register(..., default=False)`` still keeps a method out of every
    run that names no methods."""
    from unlearnlib.cli import methods_cmd
    from unlearnlib.methods import METHODS, method_names
    from unlearnlib.methods.base import Method
    after = ["random_labels", "salun", "ssd", "bad_teacher", "l1_sparse"]
    paper = ["retrain", "finetune", "neggrad", "neggrad_plus", "scrub", "scrub_attention", "scrub_similarity"]
    assert method_names("after_scrub") == after
    assert method_names(default_only=True) == method_names() == paper + after
    monkeypatch.setitem(METHODS, "zz_opt_in", Method("zz_opt_in", object, lambda *a: None, "Z", 999, "test", "x",
                                                     default=False))
    assert "zz_opt_in" in method_names() and "zz_opt_in" not in method_names(default_only=True)
    methods_cmd()
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.strip()}
    assert " opt-in " in lines["zz_opt_in"] and all(" default " in lines[m] for m in after + ["scrub"])
"""``evaluate()``: accuracies, membership inference, gap to Retrain, RC confusion and cost.

One batched inference pass per set (retain, forget, test, validation) gives every metric.
Attacks use scikit-learn:

* ``mia_loss``: the SCRUB code's loss attack. Logistic regression on per-example cross-entropy,
  forget (member, 1) against test (non-member, 0), balanced by seeded subsampling; mean
  stratified 5-fold cross-validated accuracy. Where the forget set is class-concentrated (RC:
  classes 0 and 1), the non-members are the test images *of the forget set's classes*, as in the
  official SCRUB code; ``mia_nonmembers`` records the population. Retrain scores about 50% in RB.
* ``mia_efficacy``: SalUn's MIA-efficacy (``SVC_MIA_forget_efficacy['confidence']``). An RBF SVC
  (C=3, gamma="auto") on the true-class confidence alone, retain (member) against test
  (non-member), balanced by seeded subsampling; the share of D_f it calls non-member.
  ``mia_efficacy_conf_entropy`` is the same on (confidence, entropy) together.

With ``reference`` (Retrain on the same split and seed), ``gap_*`` is the absolute difference of
each figure. ``avg_gap`` is **SalUn's Avg. Gap**: the mean of the four gaps in forget accuracy
(UA), retain accuracy, test accuracy and MIA-efficacy; ``avg_gap_5`` adds the loss attack's gap
as a fifth. ``avg_gap_val`` is SalUn's Avg. Gap with the validation set in place of the test set
(test accuracy -> validation accuracy, MIA-efficacy's non-members -> validation images): every
selection (presets, rewind, beta) reads it, never the reported test set. ``js_forget``/``js_test``
and ``l2_forget``/``l2_test`` compare output distributions.

Class forgetting (``split.test_forget``, scenario ``"cf"``): ``test_acc`` is on the other classes'
test images (SalUn's TA in class-wise forgetting), ``test_forget_acc`` on the forgotten class's
(with ``gap_test_forget_acc``), and the loss attack's non-members are the forgotten class's test
images (the official SCRUB code's class-concentrated rule).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoints import check_model_classes, check_model_split
from .train import predict_logits

__all__ = ["evaluate", "accuracy", "loss_distributions", "attack_accuracy", "mia_loss_attack", "mia_efficacy", "per_example_loss",
           "js_divergence", "GAP_METRICS", "GAP_METRICS_VAL", "forget_classes"]

GAP_METRICS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")  # SalUn's Avg. Gap: UA, RA, TA, MIA
GAP_METRICS_VAL = ("forget_acc", "retain_acc", "val_acc", "mia_efficacy_val")  # the same on validation


def _check_attack(x: np.ndarray, y: np.ndarray, folds: int) -> None:
    labels = set(np.unique(y).tolist())
    if not labels <= {0, 1}:
        raise ValueError(f"attack labels must be 0 (non-member) or 1 (member), got {sorted(labels)}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"attack needs as many labels as examples (>0), got {len(x)} and {len(y)}")
    counts = [int((y == c).sum()) for c in (0, 1)]
    if min(counts) < folds:
        raise ValueError(f"attack sets too small to split: {counts[1]} members and {counts[0]} "
                         f"non-members; need at least {folds} of each for {folds}-fold CV")


def attack_accuracy(features, labels, seed: int = 0, folds: int = 5) -> float:
    """Mean stratified k-fold accuracy of logistic regression telling members (1) from non-members (0)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    y = np.asarray(labels)
    _check_attack(x, y, folds)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean())


def _balance(a: np.ndarray, b: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(a), len(b))
    return a[np.sort(rng.choice(len(a), n, replace=False))], b[np.sort(rng.choice(len(b), n, replace=False))]


def mia_loss_attack(member_loss, nonmember_loss, seed: int = 0, folds: int = 5) -> float:
    """The loss attack: balanced by subsampling, then :func:`attack_accuracy` on the losses."""
    m, n = np.asarray(member_loss, np.float64), np.asarray(nonmember_loss, np.float64)
    if len(m) == 0 or len(n) == 0:
        raise ValueError(f"loss attack needs non-empty member ({len(m)}) and non-member ({len(n)}) sets")
    m, n = _balance(m, n, np.random.default_rng(seed))
    return attack_accuracy(np.concatenate([m, n]), np.r_[np.ones(len(m)), np.zeros(len(n))].astype(int),
                           seed, folds)


def _conf_entropy(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per example: (true-class confidence, entropy) of the softmax output."""
    p = logits.float().softmax(1)
    conf = p.gather(1, labels[:, None]).squeeze(1)
    ent = -(p * p.clamp_min(1e-12).log()).sum(1)
    return torch.stack([conf, ent], 1).cpu().numpy().astype(np.float64)


def forget_classes(split, num_classes: int) -> list[int] | None:
    """The forget set's classes (true labels, where the split has them) if they are fewer than
    all classes (class-concentrated, as in RC), else None."""
    true = getattr(split, "forget_true_labels", None)
    labels = true if true is not None else split.forget.labels
    classes = sorted(set(labels.cpu().tolist()))
    return classes if len(classes) < num_classes else None


def mia_efficacy(member_feats: np.ndarray, nonmember_feats: np.ndarray, target_feats: np.ndarray,
                 seed: int = 0) -> float:
    """SalUn's MIA-efficacy: SVC on member vs non-member features; share of target called non-member."""
    from sklearn.svm import SVC
    if min(len(member_feats), len(nonmember_feats)) < 2 or len(target_feats) == 0:
        raise ValueError(f"MIA-efficacy needs >= 2 members ({len(member_feats)}), >= 2 non-members "
                         f"({len(nonmember_feats)}) and a non-empty target ({len(target_feats)})")
    m, n = _balance(member_feats, nonmember_feats, np.random.default_rng(seed))
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(np.concatenate([m, n]), np.r_[np.ones(len(m)), np.zeros(len(n))])
    return float(1 - clf.predict(target_feats).mean())


def accuracy(model, data) -> float:
    """Top-1 accuracy of ``model`` on a LabelledImages set."""
    logits = predict_logits(model, data.images)
    return float((logits.argmax(1) == data.labels.to(logits.device)).float().mean())


def loss_distributions(models: dict, split) -> dict:
    """Per-example cross-entropy of each model on retain, forget and test (numpy arrays)."""
    return {name: {part: per_example_loss(predict_logits(m, getattr(split, part).images),
                                          getattr(split, part).labels)
                   for part in ("retain", "forget", "test")} for name, m in models.items()}


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return F.cross_entropy(logits.float(), labels.to(logits.device), reduction="none").cpu().numpy()


def js_divergence(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Per-example Jensen-Shannon divergence (nats) between two models' softmax outputs."""
    p, q = logits_a.float().softmax(1), logits_b.float().softmax(1)
    mid = (0.5 * (p + q)).clamp_min(1e-12)
    kl = lambda a: (a * (a.clamp_min(1e-12).log() - mid.log())).sum(1)
    return 0.5 * (kl(p) + kl(q))


def _outputs(model, split) -> dict:
    names = ("retain", "forget", "test") + tuple(n for n in ("validation", "test_forget")
                                                 if getattr(split, n, None) is not None)
    return {n: predict_logits(model, getattr(split, n).images) for n in names}


def _metrics(out: dict, split, seed: int) -> dict:
    dev = out["retain"].device
    bad = [n for n, o in out.items() if not torch.isfinite(o).all()]
    if bad:
        raise ValueError(f"the model's outputs are not finite on the {', '.join(bad)} set(s): its weights hold "
                         f"NaN or inf (a diverged run?); nothing to evaluate")
    lab = {n: getattr(split, n).labels.to(dev) for n in out}
    acc = {("val_acc" if n == "validation" else f"{n}_acc"): (out[n].argmax(1) == lab[n]).float().mean() for n in out}
    row = {k: float(v) for k, v in acc.items()}
    if getattr(split, "scenario", None) == "rc":
        true = split.forget_true_labels.to(dev)
        row["forget_true_acc"] = float((out["forget"].argmax(1) == true).float().mean())
        pred, y = out["test"].argmax(1), lab["test"]
        row["confusion_0_to_1"] = float((pred[y == 0] == 1).float().mean()) if (y == 0).any() else math.nan
        row["confusion_1_to_0"] = float((pred[y == 1] == 0).float().mean()) if (y == 1).any() else math.nan
    classes = forget_classes(split, out["forget"].shape[1])
    if "test_forget" in out:  # class forgetting: the test set holds the other classes, test_forget the forgotten one
        nm_out, nm_lab, pop = out["test_forget"], lab["test_forget"], f"test, classes {classes} (test_forget)"
    else:
        nonmember = torch.ones_like(lab["test"], dtype=torch.bool)
        if classes is not None:
            nonmember = torch.isin(lab["test"], torch.tensor(classes, device=dev))
        nm_out, nm_lab = out["test"][nonmember], lab["test"][nonmember]
        pop = "test, all classes" if classes is None else f"test, classes {classes}"
    row["mia_nonmembers"] = pop
    row["mia_loss"] = mia_loss_attack(per_example_loss(out["forget"], lab["forget"]),
                                      per_example_loss(nm_out, nm_lab), seed,
                                      folds=min(5, len(lab["forget"]), len(nm_lab)))
    feats = {n: _conf_entropy(out[n], lab[n]) for n in out}
    row["mia_efficacy"] = mia_efficacy(feats["retain"][:, :1], feats["test"][:, :1], feats["forget"][:, :1], seed)
    row["mia_efficacy_conf_entropy"] = mia_efficacy(feats["retain"], feats["test"], feats["forget"], seed)
    if "validation" in feats:
        row["mia_efficacy_val"] = mia_efficacy(feats["retain"][:, :1], feats["validation"][:, :1],
                                               feats["forget"][:, :1], seed)
    return row


def evaluate(model, split, reference=None, original=None, *, seconds: float | None = None,
             reference_seconds: float | None = None, seed: int | None = None, meta: dict | None = None,
             cache: dict | None = None) -> dict:
    """All metrics of ``model`` on ``split`` (see the module docstring); a flat dict of floats.

    ``reference`` is Retrain's model on the same split; ``original`` the model before unlearning
    (adds ``original_forget_acc`` and ``js_forget_to_original``). ``seconds`` and
    ``reference_seconds`` give the cost columns. ``meta``, the checkpoint metadata of ``model``,
    refuses a model made on another split. ``cache``, a dict kept by the caller for one
    (split, reference, original, seed), holds the reference's outputs and metrics and the
    original's forget-set outputs between calls, so that scoring many models against one Retrain
    computes them once (same numbers: the same deterministic computation, done once).
    """
    if len(split.forget) == 0 or len(split.test) == 0 or len(split.retain) == 0:
        raise ValueError(f"evaluate needs non-empty sets, got retain {len(split.retain)}, "
                         f"forget {len(split.forget)}, test {len(split.test)}")
    check_model_split(meta, split, "to evaluate")
    check_model_classes(model, split, "to evaluate")
    seed = getattr(split, "seed", 0) if seed is None else seed
    out = _outputs(model, split)
    row = _metrics(out, split, seed)
    cache = {} if cache is None else cache
    if reference is not None:
        if "reference" not in cache:
            ref_out = _outputs(reference, split)
            cache["reference"] = (ref_out, _metrics(ref_out, split, seed))
        ref_out, ref = cache["reference"]
        gaps = {f"gap_{k}": abs(row[k] - ref[k]) for k in GAP_METRICS}
        row.update(gaps)
        row["avg_gap"] = float(np.mean(list(gaps.values())))
        if "test_forget_acc" in row:  # class forgetting: reported with its gap, outside SalUn's four
            row["gap_test_forget_acc"] = abs(row["test_forget_acc"] - ref["test_forget_acc"])
        row["gap_mia_loss"] = abs(row["mia_loss"] - ref["mia_loss"])
        row["avg_gap_5"] = float(np.mean([*gaps.values(), row["gap_mia_loss"]]))
        if "val_acc" in row:
            row["avg_gap_val"] = float(np.mean([abs(row[k] - ref[k]) for k in GAP_METRICS_VAL]))
        for n in ("forget", "test"):
            row[f"js_{n}"] = float(js_divergence(out[n], ref_out[n]).mean())
            row[f"l2_{n}"] = float((out[n].softmax(1) - ref_out[n].softmax(1)).norm(dim=1).mean())
    if original is not None:
        if "original_forget" not in cache:
            cache["original_forget"] = predict_logits(original, split.forget.images)
        orig = cache["original_forget"]
        row["original_forget_acc"] = float((orig.argmax(1) == split.forget.labels.to(orig.device)).float().mean())
        row["js_forget_to_original"] = float(js_divergence(out["forget"], orig).mean())
    if seconds is not None:
        row["seconds"] = float(seconds)
        if reference_seconds:
            row["cost_ratio"] = float(seconds) / float(reference_seconds)
    return row

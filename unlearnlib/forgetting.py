"""Forgetting quality of the NeurIPS 2023 machine-unlearning challenge, ported from its scoring
code (google-deepmind/unlearning_evaluation, ``metric.py``; Triantafillou et al. 2024, "Are we
making progress in unlearning?", section 3), for K unlearned and K retrained models.

For each forget example, every model gives the *logit-scaled confidence* of the example's label,
``log(p_y + 1e-45) - log(sum_{j != y} p_j + 1e-45)`` (float64 softmax after subtracting the
largest logit). Then, per example:

1. the **positive** side is whichever group (retrained or unlearned) has the larger median
   (retrained on a strict ">"), so an unlearned model that forgets *too much* is caught as
   surely as one that forgets too little;
2. if one group's spread (max - min) is under 1% of the other's, the example gets the cap
   ``EPSILON_CAP`` = 50 (a peaky distribution);
3. otherwise two families of attacks, on grids of ``NUM_THRESHOLDS_PER_UNIT`` = 100 thresholds
   per unit, give (TPR, FNR, FPR, TNR): **single threshold** ("positive if conf >= t", t from the
   smallest to the largest value) and **double threshold** ("the peakier group if
   L <= conf <= R", right edges within 2 of the peakier group's maximum, widths within 2 of
   its spread);
4. each attack's epsilon: infinite when FPR = FNR = 0 (perfect separation); the attack is
   dropped when only one of them is 0; else
   ``max(log(1 - delta - FPR) - log(FNR), log(1 - delta - FNR) - log(FPR))`` floored at 0, with
   ``delta`` = 1e-5; attacks whose epsilon is NaN are dropped; the example's epsilon is the
   largest, capped at 50;
5. bucket ``i`` = [0.5 i, 0.5 (i + 1)) is worth ``2**-i``, for buckets that end at or below
   ``ceil(log(K - 1))``; an epsilon beyond the last bucket is worth 0. The forgetting quality F
   is the mean over the forget set (1 is best).

The challenge's final score multiplies F by the unlearned models' retain and test accuracy
relative to the retrained ones (``score``).

**Small K.** The challenge used 512 models of each kind. With K models, FPR and FNR move in
steps of 1/K, the buckets stop at ceil(log(K - 1)) (K = 8: 4 buckets; K = 32: 8), and two groups
drawn from one distribution are separated by chance more often than with many models. Compare
methods only at the same K, next to Retrain against Retrain (``method="retrain"`` in
:func:`unlearnlib.study.few_model_forgetting`), the ceiling for that K.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["logit_scaled_confidence", "example_epsilon", "epsilons", "forgetting_quality", "few_model_score",
           "DELTA", "EPSILON_CAP", "NUM_THRESHOLDS_PER_UNIT"]

DELTA = 1e-05
EPSILON_CAP = 50
NUM_THRESHOLDS_PER_UNIT = 100
_BUFFER = 2.0  # how far the double-threshold grids reach beyond the peakier group


def logit_scaled_confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """``log(p_y + 1e-45) - log(1 - p_y + 1e-45)`` per example, as the challenge computes it."""
    z = logits.detach().cpu().numpy().astype(np.float64)
    y = labels.detach().long().cpu().numpy()
    if z.ndim != 2 or len(z) != len(y):
        raise ValueError(f"need N x C logits and N labels, got {z.shape} and {y.shape}")
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    correct = p[rows, y].copy()
    p[rows, y] = 0
    return np.log(correct + 1e-45) - np.log(p.sum(axis=1) + 1e-45)


def _single_rates(pos: torch.Tensor, neg: torch.Tensor):
    """(TPR, FNR, FPR, TNR) of "positive if conf >= t" on the challenge's threshold grid."""
    both = torch.cat([pos, neg])
    lo, hi = both.min(), both.max()
    n = int(torch.ceil((hi - lo) * NUM_THRESHOLDS_PER_UNIT))
    t = torch.linspace(lo, hi, n)[None, :]  # the challenge's grid, dtype included (torch's default)
    return ((pos[:, None] >= t).float().mean(0), (pos[:, None] < t).float().mean(0),
            (neg[:, None] >= t).float().mean(0), (neg[:, None] < t).float().mean(0))


def _double_rates(pos: torch.Tensor, neg: torch.Tensor):
    """(TPR, FNR, FPR, TNR) of "positive if L <= conf <= R", positive being the peakier group."""
    pos_diff, neg_diff = pos.max() - pos.min(), neg.max() - neg.min()
    width = neg_diff if pos_diff > neg_diff else pos_diff
    if pos_diff >= neg_diff:  # positive := the peakiest group
        pos, neg = neg, pos
    lo = float(pos.min() + width - _BUFFER)
    hi = float(pos.max() + _BUFFER)
    right = np.linspace(lo, hi, num=int(np.ceil((hi - lo) * NUM_THRESHOLDS_PER_UNIT)))
    n_left = int(np.ceil(2 * _BUFFER * NUM_THRESHOLDS_PER_UNIT))
    w = float(width)
    left = np.concatenate([np.linspace(r - w - _BUFFER, r - w + _BUFFER, num=n_left) for r in right])
    right = np.repeat(right, n_left)
    left_t, right_t = torch.from_numpy(left)[None, :], torch.from_numpy(right)[None, :]

    def inside(c):
        return ((left_t <= c[:, None]) & (c[:, None] <= right_t)).float()
    pp_pos, pp_neg = inside(pos), inside(neg)
    return pp_pos.mean(0), (1 - pp_pos).mean(0), pp_neg.mean(0), (1 - pp_neg).mean(0)


def example_epsilon(pos_confs, neg_confs, delta: float = DELTA) -> float:
    """The challenge's epsilon of one example from its positive and negative groups' confidences."""
    pos = np.asarray(pos_confs, dtype=np.float64).reshape(-1)
    neg = np.asarray(neg_confs, dtype=np.float64).reshape(-1)
    pos_diff, neg_diff = pos.max() - pos.min(), neg.max() - neg.min()
    largest, smallest = max(pos_diff, neg_diff), min(pos_diff, neg_diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        if smallest / largest < 0.01:  # a peaky group: the worst epsilon (nan when both are constant: go on)
            return float(EPSILON_CAP)
    p, n = torch.from_numpy(pos), torch.from_numpy(neg)
    # float32 rates and epsilons, as the challenge's code computes them
    rates = [torch.cat(r).numpy() for r in zip(_double_rates(p, n), _single_rates(p, n))]
    tpr, fnr, fpr, tnr = rates
    eps = np.zeros_like(fpr)
    eps[(fpr + fnr == 0) & (tpr + tnr == 2)] = np.inf             # perfect separation
    eps[(eps == 0) & (fpr * fnr == 0)] = np.nan                   # one of them 0: too few samples; dropped
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.clip(np.fmax(np.log(1 - delta - fpr) - np.log(fnr),
                                np.log(1 - delta - fnr) - np.log(fpr)), 0, None)
    eps = np.where(eps == 0, value, eps)
    eps = eps[~np.isnan(eps)]
    if eps.size == 0:
        raise ValueError("every attack gave a NaN epsilon")
    return float(min(eps.max(), EPSILON_CAP))


def epsilons(phi_unlearned: np.ndarray, phi_retrained: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """Per-example epsilons from K x S logit-scaled confidences (K models, S forget examples)."""
    u, r = np.asarray(phi_unlearned, dtype=np.float64), np.asarray(phi_retrained, dtype=np.float64)
    if u.ndim != 2 or u.shape != r.shape:
        raise ValueError(f"need two K x S arrays of the same shape, got {u.shape} and {r.shape}")
    if u.shape[0] < 3:
        raise ValueError(f"need at least 3 models of each kind (K - 1 >= 2 for one bucket), got K={u.shape[0]}")
    if not 0 <= delta < 1:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise ValueError("confidences must be finite")
    retrain_positive = np.median(r, axis=0) > np.median(u, axis=0)
    pos = np.where(retrain_positive, r, u)
    neg = np.where(retrain_positive, u, r)
    return np.array([example_epsilon(pos[:, s], neg[:, s], delta) for s in range(u.shape[1])])


def forgetting_quality(eps: np.ndarray, K: int) -> float:
    """F: the mean over examples of ``2**-i`` for the bucket [0.5 i, 0.5 (i + 1)) holding each
    epsilon, over the buckets that end at or below ``ceil(log(K - 1))``; 0 beyond them."""
    eps = np.asarray(eps, dtype=float)
    if eps.size == 0 or np.isnan(eps).any() or (eps < 0).any():
        raise ValueError("eps must be a non-empty array of values >= 0 (inf allowed)")
    if isinstance(K, bool) or not isinstance(K, int) or K < 3:
        raise ValueError(f"K must be an integer >= 3, got {K!r}")
    max_eps = math.ceil(math.log(K - 1))
    n_buckets = int(max_eps / 0.5)  # buckets [0, .5), [.5, 1), ... ending at or below max_eps
    idx = np.floor(eps / 0.5)
    points = np.where(idx < n_buckets, 0.5 ** np.minimum(idx, n_buckets), 0.0)
    return float(points.mean())


@torch.no_grad()
def few_model_score(unlearned: list, retrained: list, split, delta: float = DELTA) -> dict:
    """F (and the challenge's utility-weighted score) from K unlearned and K retrained models.

    Returns ``F``, ``score`` (F x retain-accuracy ratio x test-accuracy ratio, unlearned over
    retrained, means over models), ``K``, the per-example ``epsilons`` and the accuracies.
    Labels are the split's forget labels (the ones the original model was trained with).
    """
    from .metrics import accuracy
    from .train import predict_logits
    if len(unlearned) != len(retrained):
        raise ValueError(f"need as many unlearned as retrained models, got {len(unlearned)} and {len(retrained)}")
    if len(unlearned) < 3:
        raise ValueError(f"need at least 3 models of each kind, got K={len(unlearned)}")

    def phis(models):
        return np.stack([logit_scaled_confidence(predict_logits(m, split.forget.images), split.forget.labels)
                         for m in models])
    eps = epsilons(phis(unlearned), phis(retrained), delta)
    f = forgetting_quality(eps, len(unlearned))
    acc = {f"{kind}_{part}_acc": float(np.mean([accuracy(m, getattr(split, part)) for m in models]))
           for kind, models in (("unlearned", unlearned), ("retrained", retrained)) for part in ("retain", "test")}
    ratio = (acc["unlearned_retain_acc"] / max(acc["retrained_retain_acc"], 1e-12)
             * acc["unlearned_test_acc"] / max(acc["retrained_test_acc"], 1e-12))
    return {"F": f, "score": f * ratio, "K": len(unlearned), "delta": delta, "epsilons": eps.tolist(),
            "capped_eps_fraction": float(np.mean(eps >= EPSILON_CAP)), **acc}

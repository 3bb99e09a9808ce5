"""Few-model forgetting quality: a small-K version of the NeurIPS 2023 unlearning challenge's score.

Triantafillou et al. 2024, "Are we making progress in unlearning? Findings from the first NeurIPS
unlearning competition", section 3. From K models unlearned by a method and K models retrained
from scratch on D_r (same split, different seeds), for each forget example x:

1. every model gives the *logit-scaled confidence* of x's label,
   ``phi = log(p_y / (1 - p_y)) = z_y - logsumexp_{j != y} z_j``;
2. threshold attacks ("unlearned if phi > t", t at every observed value) give FPR and FNR over
   the 2K values (unlearned = positive);
3. each attack gives ``eps = max(log(1 - delta - FPR) - log(FNR), log(1 - delta - FNR) - log(FPR))``
   (an attack with FPR = FNR = 0 separates perfectly: eps = inf; one with only one of them 0 is
   discarded; both terms undefined: eps = inf); ``eps_x`` is the largest, and at least 0;
4. ``eps_x`` falls into a bin of width 0.5 (index n = 1 for [0, 0.5), ..., 13 for 6 and above),
   worth ``2 / 2**n``; the forgetting quality F is the mean over D_f (1 is best).

The challenge's final score multiplies F by the unlearned models' retain and test accuracy
relative to the retrained ones (``score``).

**Small K.** The challenge used 512 models of each kind; here K is a few (2 to 32). With few
models FPR and FNR move in steps of 1/K, so a finite eps is capped near ``log(K)`` and a strong
attack's eps is *underestimated*; at the same time two groups of K values from one distribution
are perfectly separated by chance with probability ``2 / C(2K, K)`` (1/3 for K = 2, 0.03 for
K = 4), which sends eps to infinity for that example and lowers F even for exact unlearning.
Compare methods only at the same K, always next to Retrain-against-Retrain (``retrain`` as the
method), which gives the ceiling for that K.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["logit_scaled_confidence", "threshold_attack_rates", "example_epsilon", "epsilons",
           "forgetting_quality", "few_model_score"]


def logit_scaled_confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """``log(p_y / (1 - p_y))`` per example, computed stably as ``z_y - logsumexp_{j != y} z_j``."""
    logits = logits.detach().float().cpu()
    labels = labels.detach().long().cpu()
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"need N x C logits and N labels, got {tuple(logits.shape)} and {tuple(labels.shape)}")
    z_y = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return (z_y - torch.logsumexp(others, dim=1)).numpy().astype(np.float64)


def threshold_attack_rates(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FPR and FNR of "unlearned if phi > t" for t at every observed value (one example's 2K values)."""
    u, r = np.asarray(unlearned, dtype=float), np.asarray(retrained, dtype=float)
    t = np.sort(np.concatenate([r, u]))
    fpr = (r[None, :] > t[:, None]).mean(1)   # retrained called unlearned
    fnr = (u[None, :] <= t[:, None]).mean(1)  # unlearned called retrained
    return fpr, fnr


def _log(x: float) -> float:
    """numpy's log on a scalar: -inf at 0, nan below."""
    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)


def example_epsilon(fpr, fnr, delta: float = 0.01) -> float:
    """The challenge's per-example eps from the attacks' (FPR, FNR) pairs (see the module notes)."""
    best = 0.0
    for a, b in zip(np.asarray(fpr, dtype=float), np.asarray(fnr, dtype=float)):
        if a == 0 and b == 0:
            return math.inf
        if a == 0 or b == 0:
            continue
        e1, e2 = _log(1 - delta - a) - math.log(b), _log(1 - delta - b) - math.log(a)
        if math.isnan(e1) and math.isnan(e2):
            return math.inf
        best = max(best, np.nanmax([e1, e2]))
    return float(best)


def epsilons(phi_unlearned: np.ndarray, phi_retrained: np.ndarray, delta: float = 0.01) -> np.ndarray:
    """Per-example eps from K x S arrays of logit-scaled confidences (K models, S forget examples)."""
    u, r = np.asarray(phi_unlearned, dtype=float), np.asarray(phi_retrained, dtype=float)
    if u.ndim != 2 or u.shape != r.shape:
        raise ValueError(f"need two K x S arrays of the same shape, got {u.shape} and {r.shape}")
    if u.shape[0] < 2:
        raise ValueError(f"need at least 2 models of each kind, got K={u.shape[0]}")
    if not 0 <= delta < 1:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    return np.array([example_epsilon(*threshold_attack_rates(u[:, s], r[:, s]), delta=delta)
                     for s in range(u.shape[1])])


def forgetting_quality(eps: np.ndarray, bin_width: float = 0.5, bins: int = 13) -> float:
    """F = mean of ``2 / 2**n`` with n the bin of each eps (n = 1 for [0, bin_width), up to ``bins``)."""
    eps = np.asarray(eps, dtype=float)
    if eps.size == 0 or np.isnan(eps).any() or (eps < 0).any():
        raise ValueError("eps must be a non-empty array of values >= 0 (inf allowed)")
    n = np.digitize(eps, np.arange(bins) * bin_width)
    return float(np.mean(2.0 / 2.0 ** n))


@torch.no_grad()
def few_model_score(unlearned: list, retrained: list, split, delta: float = 0.01) -> dict:
    """F (and the challenge's utility-weighted score) from K unlearned and K retrained models.

    Returns ``F``, ``score`` (F x retain-accuracy ratio x test-accuracy ratio, unlearned over
    retrained, means over models), ``K``, the per-example ``epsilons`` and the accuracies.
    Labels are the split's forget labels (the ones the original model was trained with).
    """
    from .metrics import accuracy
    from .train import predict_logits
    if len(unlearned) != len(retrained):
        raise ValueError(f"need as many unlearned as retrained models, got {len(unlearned)} and {len(retrained)}")
    if len(unlearned) < 2:
        raise ValueError(f"need at least 2 models of each kind, got K={len(unlearned)}")

    def phis(models):
        return np.stack([logit_scaled_confidence(predict_logits(m, split.forget.images), split.forget.labels)
                         for m in models])
    eps = epsilons(phis(unlearned), phis(retrained), delta)
    f = forgetting_quality(eps)
    acc = {f"{kind}_{part}_acc": float(np.mean([accuracy(m, getattr(split, part)) for m in models]))
           for kind, models in (("unlearned", unlearned), ("retrained", retrained)) for part in ("retain", "test")}
    ratio = (acc["unlearned_retain_acc"] / max(acc["retrained_retain_acc"], 1e-12)
             * acc["unlearned_test_acc"] / max(acc["retrained_test_acc"], 1e-12))
    return {"F": f, "score": f * ratio, "K": len(unlearned), "delta": delta, "epsilons": eps.tolist(),
            "finite_eps_mean": float(np.mean(eps[np.isfinite(eps)])) if np.isfinite(eps).any() else math.inf,
            "inf_eps_fraction": float(np.mean(np.isinf(eps))), **acc}

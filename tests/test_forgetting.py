"""The NeurIPS 2023 challenge's forgetting quality (ported scoring code) against hand-derived values.

Every case builds, for one or more forget examples, K retrained confidences r and K unlearned
confidences u; the expected epsilon and F are derived in the comments from the definition
(unlearnlib.forgetting's module docstring), not from the implementation.
"""
import math

import numpy as np
import pytest
import torch

from unlearnlib.forgetting import (DELTA, EPSILON_CAP, epsilons, example_epsilon, few_model_score,
                                   forgetting_quality, logit_scaled_confidence)


def _columns(values, examples=3):
    """K x S: the same K values for each of S examples."""
    return np.tile(np.asarray(values, dtype=float)[:, None], (1, examples))


def test_logit_scaled_confidence_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)], [1.0, 1.0]])
    phi = logit_scaled_confidence(logits, torch.tensor([1, 0, 0]))
    # p_y = 3/4 -> log(3/4) - log(1/4) = log 3; p_y = 1/4 -> -log 3; p_y = 1/2 -> 0
    assert phi == pytest.approx([math.log(3), -math.log(3), 0.0], abs=1e-6)  # float32 logits
    # the challenge's +1e-45: p_wrong underflows to 0 in float64 at a logit gap of 1000
    assert logit_scaled_confidence(torch.tensor([[1000.0, 0.0]]), torch.tensor([0]))[0] == pytest.approx(
        math.log(1 + 1e-45) - math.log(1e-45))


R8 = np.arange(8.0)        # K = 8 retrained confidences 0..7: population std sqrt(5.25) = 2.2913
SD8 = float(R8.std())


def test_exact_unlearning_scores_one_at_k8_and_k32():
    # u == r: at every threshold FPR = TPR and FNR = TNR, so log(1 - delta - FPR) - log(FNR)
    # = log(1 - delta - FPR) - log(1 - FPR) < 0 (and likewise the other term): epsilon clips to
    # 0 wherever both rates are non-zero, and the other attacks are dropped. Every example is
    # in bucket [0, 0.5), worth 1: F = 1.
    for k in (8, 32):
        r = np.arange(float(k))
        eps = epsilons(_columns(r), _columns(r))
        assert eps.tolist() == [0.0, 0.0, 0.0]
        assert forgetting_quality(eps, k) == 1.0


@pytest.mark.parametrize("direction", [+1, -1], ids=["under-forgetting", "over-forgetting"])
def test_one_sd_shift_scores_low_in_both_directions_k8(direction):
    # u = r + 1 sd (under-forgetting: the unlearned side is positive, larger median) or r - 1 sd
    # (over-forgetting: the retrained side is positive); the two are mirror images. Single
    # threshold t in (6, 6 + sd - 2]: 1 of 8 negatives above t, 4 of 8 positives below:
    # FPR = 1/8, FNR = 4/8, eps = log(1 - delta - 4/8) - log(1/8) = log(3.99992) = 1.38627.
    # No other (FPR, FNR) pair does better ((2/8, 3/8) gives log(2.5) = 0.916; the double-threshold
    # rule at best (5/8, 1/8): log(3) = 1.0986). Bucket [1, 1.5) = index 2, worth 1/4; K = 8 has
    # buckets up to ceil(log 7) = 2, so F = 0.25 (against 1 for exact unlearning).
    eps = epsilons(_columns(R8 + direction * SD8), _columns(R8))
    assert eps == pytest.approx([math.log((0.5 - DELTA) / 0.125)] * 3, rel=1e-6)
    assert forgetting_quality(eps, 8) == 0.25


@pytest.mark.parametrize("direction", [+1, -1], ids=["under-forgetting", "over-forgetting"])
def test_three_sd_shift_scores_lower_in_both_directions_k8(direction):
    # u = r +- 3 sd = r +- 6.874: the groups overlap on one value each (7 and 6.874). A threshold
    # in (6.874, 7] gives FPR = 1/8, FNR = 1/8: eps = log(1 - delta - 1/8) - log(1/8) = log(6.99992)
    # = 1.94590; separating further makes one rate 0 (dropped). Bucket [1.5, 2) = index 3: 1/8.
    eps = epsilons(_columns(R8 + direction * 3 * SD8), _columns(R8))
    assert eps == pytest.approx([math.log((0.875 - DELTA) / 0.125)] * 3, rel=1e-6)
    assert forgetting_quality(eps, 8) == 0.125


def test_one_and_three_sd_shifts_k32_and_full_separation():
    r = np.arange(32.0)  # population std 9.2331
    # u = r + 9.2331: the best attack (single threshold, t in (30.23, 31]) leaves 11 of 32
    # retrained values above t and 1 unlearned value below: FPR = 11/32 and FNR = 1/32 for the
    # "retrained" reading: eps = log(1 - delta - 11/32) - log(1/32) = log(10.99968) = 2.39787.
    # K = 32: buckets up to ceil(log 31) = 4, i.e. 8 buckets; [2, 2.5) is index 4, worth 1/16.
    eps = epsilons(_columns(r + r.std()), _columns(r))
    assert eps == pytest.approx([math.log((11 / 32 - DELTA) / (1 / 32))] * 3, rel=1e-6)
    assert forgetting_quality(eps, 32) == 0.0625
    # u = r +- 3 sd = r +- 27.699: a threshold in (28, 28.699] leaves 3 of 32 retrained values above
    # it and 1 of 32 unlearned values below: FPR = 3/32, FNR = 1/32, and the larger term is
    # log(1 - delta - 3/32) - log(1/32) = log(28.99968) = 3.36728 (the mirror pair when the shift is
    # negative). Bucket [3, 3.5) is index 6, worth 1/64.
    for direction in (+1, -1):
        eps = epsilons(_columns(r + direction * 3 * r.std()), _columns(r))
        assert eps == pytest.approx([math.log((29 / 32 - DELTA) / (1 / 32))] * 3, rel=1e-6)
        assert forgetting_quality(eps, 32) == 1 / 64
    # every unlearned value above every retrained one: FPR = FNR = 0 at some threshold, epsilon
    # infinite, capped at 50, beyond the last bucket (4): worth 0
    eps = epsilons(_columns(r + 100), _columns(r))
    assert eps.tolist() == [EPSILON_CAP] * 3 and forgetting_quality(eps, 32) == 0.0


def test_peaky_unlearned_distribution_gets_the_cap():
    # every unlearned model gives the same confidence (spread 0 < 1% of the retrained spread 7):
    # epsilon = 50 whatever the medians, worth 0 at K = 8
    eps = epsilons(_columns(np.full(8, 3.5)), _columns(R8))
    assert eps.tolist() == [EPSILON_CAP] * 3 and forgetting_quality(eps, 8) == 0.0
    # the 1% rule's edge: a tight group around the retrained value 3 (so that no interval can
    # separate the groups) with a spread of 0.0701 (1.001% of 7) is scored by the attacks; the
    # same group at 0.0699 (0.999%) gets the cap
    assert example_epsilon(3 + np.linspace(-0.03505, 0.03505, 8), R8) < EPSILON_CAP
    assert example_epsilon(3 + np.linspace(-0.03495, 0.03495, 8), R8) == EPSILON_CAP


def test_buckets_by_hand():
    # K = 8: buckets [0, .5) [.5, 1) [1, 1.5) [1.5, 2) worth 1, 1/2, 1/4, 1/8; 2 and above: 0
    assert forgetting_quality(np.array([0.2, 0.5, 1.49, 1.5, 2.0, 50.0]), 8) == pytest.approx(
        (1 + 0.5 + 0.25 + 0.125 + 0 + 0) / 6)
    # K = 3: ceil(log 2) = 1, two buckets
    assert forgetting_quality(np.array([0.4, 0.9, 1.0]), 3) == pytest.approx((1 + 0.5 + 0) / 3)


@pytest.mark.parametrize("call, msg", [
    (lambda: epsilons(np.zeros((2, 3)), np.zeros((2, 3))), "at least 3 models"),
    (lambda: epsilons(np.zeros((3, 3)), np.zeros((3, 4))), "same shape"),
    (lambda: epsilons(np.zeros((3, 3)), np.zeros((3, 3)), delta=1.5), "delta must be in"),
    (lambda: epsilons(np.full((3, 1), np.nan), np.zeros((3, 1))), "must be finite"),
    (lambda: forgetting_quality(np.array([-1.0]), 8), "values >= 0"),
    (lambda: forgetting_quality(np.array([1.0]), 2), "K must be an integer >= 3"),
    (lambda: few_model_score([1], [1, 2], None), "as many unlearned as retrained"),
])
def test_bad_input_is_refused(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()


def test_on_real_models_copies_score_zero_and_identical_groups_score_one(rb_quick, original_rb):
    """Any three models stand in for the retrained group here: what is checked is the data path
    from models to F (logits -> confidences -> epsilons -> buckets)."""
    from unlearnlib.methods import unlearn
    others = [unlearn("neggrad", original_rb, rb_quick, lr=lr, epochs=1).model for lr in (1e-3, 3e-3, 1e-2)]
    same = few_model_score(others, others, rb_quick)
    assert same["F"] == 1.0 and same["score"] == pytest.approx(1.0)
    # three copies of the original: a spread of 0 on every example, the peaky cap: F = 0
    orig = few_model_score([original_rb] * 3, others, rb_quick)
    assert orig["F"] == 0.0 and orig["capped_eps_fraction"] == 1.0
    assert orig["K"] == 3 and len(orig["epsilons"]) == len(rb_quick.forget)

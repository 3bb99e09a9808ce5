"""The few-model forgetting score (NeurIPS 2023 challenge style) against hand-computed values."""
import math

import numpy as np
import pytest
import torch

from unlearnlib.forgetting import (epsilons, example_epsilon, few_model_score, forgetting_quality,
                                   logit_scaled_confidence, threshold_attack_rates)


def test_logit_scaled_confidence_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)], [1.0, 1.0]]).log_softmax(1)
    phi = logit_scaled_confidence(logits, torch.tensor([1, 0, 0]))
    # p = 3/4 -> log 3; p = 1/4 -> log(1/3); p = 1/2 -> 0
    assert phi == pytest.approx([math.log(3), -math.log(3), 0.0], abs=1e-6)
    big = torch.tensor([[100.0, 0.0, 0.0]])  # stable where p_y rounds to 1 in float32
    assert logit_scaled_confidence(big, torch.tensor([0]))[0] == pytest.approx(100 - math.log(2), abs=1e-4)


def test_threshold_attack_rates_by_hand():
    fpr, fnr = threshold_attack_rates(np.array([1.0, 3.0]), np.array([2.0, 4.0]))  # thresholds 1, 2, 3, 4
    assert fpr.tolist() == [1.0, 0.5, 0.5, 0.0]
    assert fnr.tolist() == [0.5, 0.5, 1.0, 1.0]


def test_example_epsilon_by_hand():
    # log(1 - 0.01 - 0.5) - log(0.25) = log(1.96); the other side log(0.74 / 0.5) is smaller
    assert example_epsilon([0.5], [0.25]) == pytest.approx(math.log(1.96))
    assert example_epsilon([0.0], [0.0]) == math.inf          # a perfect attack
    assert example_epsilon([0.0], [0.5]) == 0.0               # discarded: one rate is 0
    assert example_epsilon([1.0], [1.0]) == math.inf          # a perfect attack, inverted
    assert example_epsilon([0.5, 0.5], [0.5, 0.25]) == pytest.approx(math.log(1.96))  # the best attack


def test_epsilons_of_interleaved_and_separated_values():
    u = np.array([[1.0, 3.0], [3.0, 4.0]]).T  # K=2 models (rows), S=2 examples (columns)
    r = np.array([[2.0, 4.0], [1.0, 2.0]]).T
    eps = epsilons(u, r)
    assert eps[0] == 0.0           # interleaved: no attack beats chance
    assert eps[1] == math.inf      # every unlearned value above every retrained one


def test_forgetting_quality_bins_by_hand():
    # bins of width 0.5: [0, 0.5) -> n=1 -> 1; [0.5, 1) -> n=2 -> 0.5; inf -> n=13 -> 2/2**13
    assert forgetting_quality(np.array([0.2, 0.7, math.inf])) == pytest.approx((1 + 0.5 + 2 / 2**13) / 3)
    assert forgetting_quality(np.zeros(5)) == 1.0


@pytest.mark.parametrize("call, msg", [
    (lambda: epsilons(np.zeros((1, 3)), np.zeros((1, 3))), "at least 2 models"),
    (lambda: epsilons(np.zeros((2, 3)), np.zeros((2, 4))), "same shape"),
    (lambda: epsilons(np.zeros((2, 3)), np.zeros((2, 3)), delta=1.5), "delta must be in"),
    (lambda: forgetting_quality(np.array([-1.0])), "values >= 0"),
    (lambda: few_model_score([1], [1, 2], None), "as many unlearned as retrained"),
])
def test_bad_input_is_refused(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()


def test_on_real_models_original_scores_low_and_identical_models_score_one(rb_quick, original_rb, retrain_rb):
    from unlearnlib.methods import unlearn
    from unlearnlib.methods import method_config
    other = unlearn("retrain", original_rb, rb_quick, method_config("retrain", "quick", "rb"), seed=1).model
    retrained = [retrain_rb.model, other]
    same = few_model_score(retrained, retrained, rb_quick)
    assert same["F"] == 1.0 and same["score"] == pytest.approx(1.0)
    orig = few_model_score([original_rb, original_rb], retrained, rb_quick)
    # the original memorised D_f: its confidences sit above both retrained models' on most examples
    assert orig["F"] < 0.5 and orig["inf_eps_fraction"] > 0.5, orig["F"]
    assert orig["K"] == 2 and len(orig["epsilons"]) == len(rb_quick.forget)

"""Each loss against values computed by hand on small fixed tensors."""
import math

import pytest
import torch

from unlearnlib.losses import attention_loss, attention_map, kd_kl, similarity_loss, similarity_matrix


def test_kd_kl_hand_value_T1():
    # teacher p = softmax([ln 3, 0]) = [0.75, 0.25]; student q = [0.5, 0.5]
    t = torch.tensor([[math.log(3), 0.0]])
    s = torch.zeros(1, 2)
    want = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # 0.130812...
    assert kd_kl(s, t, T=1.0).item() == pytest.approx(want, rel=1e-6)


def test_kd_kl_temperature_scaling_and_batch_mean():
    # at T=2 the same distributions arise from doubled teacher logits; the value is scaled by T^2
    t = torch.tensor([[2 * math.log(3), 0.0], [2 * math.log(3), 0.0]])
    s = torch.zeros(2, 2)
    want = 4 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert kd_kl(s, t, T=2.0).item() == pytest.approx(want, rel=1e-6)
    assert kd_kl(t, t, T=4.0).item() == pytest.approx(0.0, abs=1e-5)


def test_attention_map_and_loss_hand_values():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # 1 x 2 channels x 1 x 2
    # mean over channels of F^2: [(1+9)/2, (4+16)/2] = [5, 10]; L2-normalised: [1, 2]/sqrt(5)
    a = attention_map(f)
    assert a.tolist()[0] == pytest.approx([1 / math.sqrt(5), 2 / math.sqrt(5)], rel=1e-6)
    g = torch.tensor([[[[1.0, 0.0]]]])  # map [1, 0]
    want = ((1 / math.sqrt(5) - 1) ** 2 + (2 / math.sqrt(5)) ** 2) / 2
    assert attention_loss([f], [g]).item() == pytest.approx(want, rel=1e-6)
    # summed over layers
    assert attention_loss([f, f], [g, g]).item() == pytest.approx(2 * want, rel=1e-6)


def test_similarity_matrix_and_loss_hand_values():
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(2, 2, 1, 1)
    # f f^T = [[1, 1], [1, 2]]; rows normalised: [1,1]/sqrt2, [1,2]/sqrt5
    G = similarity_matrix(f)
    r2, r5 = 1 / math.sqrt(2), 1 / math.sqrt(5)
    assert G.flatten().tolist() == pytest.approx([r2, r2, r5, 2 * r5], rel=1e-6)
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1)  # G = identity
    want = ((r2 - 1) ** 2 + r2 ** 2 + r5 ** 2 + (2 * r5 - 1) ** 2) / 4
    assert similarity_loss(f, e).item() == pytest.approx(want, rel=1e-6)


def test_attention_loss_rejects_mismatched_layers():
    with pytest.raises(ValueError, match="one teacher feature"):
        attention_loss([torch.ones(1, 1, 2, 2)], [])

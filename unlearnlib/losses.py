"""Distillation losses of SCRUB and its feature-distillation variants.

* :func:`kd_kl` is d(x; w_u) of eq. (4) of the paper (Kurmanji et al., "Towards Unbounded
  Machine Unlearning", NeurIPS 2023): KL(teacher || student) on temperature-softened outputs,
  as in the official SCRUB code's ``DistillKL``.
* :func:`attention_loss` is the feature term of eqs. (6)/(7) for Attention SCRUB: attention
  transfer (Zagoruyko and Komodakis, ICLR 2017) summed over several layers.
* :func:`similarity_loss` is the feature term for Similarity SCRUB: similarity-preserving
  distillation (Tung and Mori, ICCV 2019) on the topmost convolutional layer.

Each is a batch mean, which is the 1/N factor of the equations applied per mini-batch.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["kd_kl", "attention_map", "attention_loss", "attention_loss_to_maps", "similarity_matrix", "similarity_loss"]


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 4.0) -> torch.Tensor:
    """Eq. (4): ``KL(softmax(t/T) || softmax(s/T)) * T**2``, summed over classes, batch mean."""
    log_p_s = F.log_softmax(student_logits.float() / T, dim=1)
    p_t = F.softmax(teacher_logits.float() / T, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="sum") * (T * T) / student_logits.shape[0]


def attention_map(feature: torch.Tensor) -> torch.Tensor:
    """Spatial attention ``normalize(mean_c(F**2).flatten(1))`` of an N x C x H x W feature."""
    return F.normalize(feature.float().pow(2).mean(1).flatten(1), dim=1)


def attention_loss(student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]
                   ) -> torch.Tensor:
    """Eqs. (6)/(7), Attention SCRUB: sum over layers of MSE between normalised attention maps."""
    if len(student_feats) != len(teacher_feats) or not student_feats:
        raise ValueError("attention_loss needs one teacher feature per student feature (>= 1)")
    return attention_loss_to_maps(student_feats, [attention_map(t) for t in teacher_feats])


def attention_loss_to_maps(student_feats: Sequence[torch.Tensor], teacher_maps: Sequence[torch.Tensor]
                           ) -> torch.Tensor:
    """:func:`attention_loss` with the teacher's attention maps already computed (cached)."""
    return sum(F.mse_loss(attention_map(s), t) for s, t in zip(student_feats, teacher_maps))


def similarity_matrix(feature: torch.Tensor) -> torch.Tensor:
    """Batch similarity ``G = normalize(f @ f.T)`` with rows L2-normalised, f = F.flatten(1)."""
    f = feature.float().flatten(1)
    return F.normalize(f @ f.t(), dim=1)


def similarity_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """Eqs. (6)/(7), Similarity SCRUB: MSE between the teacher's and the student's G (b x b)."""
    return F.mse_loss(similarity_matrix(student_feat), similarity_matrix(teacher_feat))

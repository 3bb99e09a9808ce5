"""Captum saliency maps and a number for how alike two models' attributions are.

``attribute(model, images, targets, kind)`` gives one non-negative H x W map per image for
``kind`` in ``saliency`` (|gradient|, Simonyan et al. 2014), ``integrated_gradients``
(Sundararajan et al. 2017, black baseline) and ``gradcam`` (Selvaraju et al. 2017, on
``layer4``, upsampled). ``rank_similarity`` is the mean Spearman rank correlation between two
models' maps of the same images: 1 means the same pixels matter in the same order.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["attribute", "rank_similarity", "compare_models", "KINDS"]

KINDS = ("saliency", "integrated_gradients", "gradcam")


def _captum():
    try:
        import captum.attr as attr
    except ImportError as e:  # only this feature needs captum
        raise ImportError("saliency maps need captum: pip install captum "
                          "(or pip install 'unlearnlib[notebooks]')") from e
    return attr


def attribute(model, images: torch.Tensor, targets: torch.Tensor, kind: str = "saliency",
              steps: int = 32) -> torch.Tensor:
    """Attribution maps (N x H x W, float, >= 0) of ``model`` for ``targets`` on ``images``."""
    if kind not in KINDS:
        raise ValueError(f"unknown attribution {kind!r}; allowed: {', '.join(KINDS)}")
    attr = _captum()
    dev = next(model.parameters()).device
    model = model.eval()
    x = (images.float() / 255 if images.dtype == torch.uint8 else images.float()).to(dev)
    x.requires_grad_(True)
    t = targets.to(dev)
    if kind == "saliency":
        a = attr.Saliency(model).attribute(x, target=t, abs=True).amax(1)
    elif kind == "integrated_gradients":
        a = attr.IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=t,
                                                      n_steps=steps).abs().sum(1)
    else:
        g = attr.LayerGradCam(model, model.layer4).attribute(x, target=t, relu_attributions=True)
        a = F.interpolate(g, size=x.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
    return a.detach().float().cpu()


def _ranks(a: torch.Tensor) -> torch.Tensor:
    flat = a.flatten(1)
    return flat.argsort(1).argsort(1).float()


def rank_similarity(maps_a: torch.Tensor, maps_b: torch.Tensor) -> float:
    """Mean over images of Spearman's rho between two N x H x W attribution maps."""
    if maps_a.shape != maps_b.shape:
        raise ValueError(f"attribution maps differ in shape: {tuple(maps_a.shape)} vs {tuple(maps_b.shape)}")
    ra, rb = _ranks(maps_a), _ranks(maps_b)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    rho = (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-12)
    return float(rho.mean())


def compare_models(models: dict, images: torch.Tensor, targets: torch.Tensor, kinds=KINDS,
                   reference: str = "retrain") -> tuple[dict, list[dict]]:
    """Maps of every model for every kind (each map scaled to [0, 1] per image), and a table
    of each model's mean rank correlation with ``reference``'s maps."""
    maps: dict = {}
    table = []
    for kind in kinds:
        maps[kind] = {}
        for name, m in models.items():
            a = attribute(m, images, targets, kind)
            lo, hi = a.flatten(1).min(1)[0], a.flatten(1).max(1)[0]
            maps[kind][name] = ((a - lo[:, None, None]) / (hi - lo).clamp_min(1e-12)[:, None, None]).numpy()
        for name in models:
            if reference in models:
                table.append({"kind": kind, "model": name, "rank_corr_to_" + reference: round(
                    rank_similarity(torch.from_numpy(maps[kind][name]), torch.from_numpy(maps[kind][reference])), 4)})
    return maps, table

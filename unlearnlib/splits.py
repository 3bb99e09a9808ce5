"""The paper's two scenarios as seeded, fingerprinted splits.

* ``"rb"``, removing bias (paper section 4.3): CIFAR-10. From the 50,000-image training pool the
  seed draws 5,000 train and 1,000 test images (500 + 100 per class; the paper calls the latter
  its validation images). The forget set is 10% of train, stratified: 50 per class. Retain is
  the other 4,500; test is the 1,000 held-out images. ``split.official_test()`` gives the
  10,000-image CIFAR-10 test set.
* ``"rc"``, resolving confusion (section 4.4): Tiny-ImageNet-20, 500 images per class split
  450/50 by the seed. 100 class-0 training images are labelled 1 and 100 class-1 images are
  labelled 0: those 200 are the forget set, with their wrong labels. Retain is the other 8,800;
  test is the 1,000 held-out images. ``split.official_test()`` gives the 1,000 official val images.
* ``"cf"``, class forgetting (the standard benchmark of SCRUB, SalUn and SSD): RB's CIFAR-10 pool,
  sizes and training set for the same seed and profile, with every training image of one class
  (``forget_class``, else drawn with the seed) as the forget set. Retain is the other classes'
  images; ``test`` and ``validation`` hold the other classes' held-out images and ``test_forget``
  the forgotten class's. The training set (retain + forget) equals RB's of the same seed, so RB's
  original model is this scenario's too (``train_fingerprint``).

**Validation.** Every choice (presets, SCRUB+R's rewind, beta) reads ``split.validation``, never
the reported test set. RB: the next 100 images per class of the seed's permutation of the
CIFAR-10 training pool, disjoint from retain, forget and test. RC, which uses all 500 training
images of a class: Tiny-ImageNet's own 50 validation images per class.

``profile="quick"`` keeps the same construction on fewer images per class (and 32x32
Tiny-ImageNet), for 2 CPU cores. The ``fingerprint`` is a sha256 over the scenario, data set,
data source, sizes, chosen indices, labels and the sha256 of every set's pixels: equal
fingerprints mean equal splits, down to the pixel. ``data_source`` names the archive (and its
checksum) or the download the images came from.
"""
from __future__ import annotations

import hashlib
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .data import DATASETS, LabelledImages, load_dataset

__all__ = ["Split", "make_split", "SCENARIOS", "SPLIT_SIZES", "validate_seed", "validate_fraction", "pixel_digest"]

SCENARIOS = {"rb": "cifar10", "rc": "tiny-imagenet-20", "cf": "cifar10"}
_TEST_PART = {"rb": "test", "rc": "val", "cf": "test"}
# per profile and scenario: train images per class, test images per class, image size,
# default forget fraction (RB: of each class's train images; RC: of classes 0 and 1, swapped)
# RB's validation images per class come from the training pool (``val``); RC's are the official val set
# (all of it with val=0, else the first ``val`` images of each class)
SPLIT_SIZES = {
    "paper": {"rb": dict(train=500, test=100, val=100, size=32, forget_fraction=0.1),
              "rc": dict(train=450, test=50, val=0, size=64, forget_fraction=100 / 450)},
    # the paper's split sizes exactly, RC at 32x32 (the paper: 64x64) so that 2 CPU cores can train it
    "paper-cpu": {"rb": dict(train=500, test=100, val=100, size=32, forget_fraction=0.1),
                  "rc": dict(train=450, test=50, val=0, size=32, forget_fraction=100 / 450)},
    # a dry run of "paper" (profiles.py): the paper's image sizes, a few images per class; RC's
    # validation is the first 2 official val images of each class (val > 0 for RC: that many per class)
    "paper-dry": {"rb": dict(train=20, test=5, val=5, size=32, forget_fraction=0.1),
                  "rc": dict(train=10, test=2, val=2, size=64, forget_fraction=0.3)},
    "quick": {"rb": dict(train=60, test=20, val=100, size=32, forget_fraction=0.1),
              "rc": dict(train=40, test=10, val=0, size=32, forget_fraction=0.25)},
}


def validate_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def validate_fraction(fraction) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) \
            or not np.isfinite(fraction) or not 0 < fraction < 1:
        raise ValueError(f"forget_fraction must be a number in the open interval (0, 1), "
                         f"got {fraction!r}")
    return float(fraction)


@dataclass
class Split:
    """Retain, forget and test sets (uint8 images, int64 labels) of one scenario and seed."""
    scenario: str
    seed: int
    profile: str
    dataset: str
    num_classes: int
    class_names: list
    retain: LabelledImages
    forget: LabelledImages
    test: LabelledImages
    forget_true_labels: torch.Tensor
    indices: dict = field(repr=False)
    description: str = ""
    fingerprint: str = ""
    data_dir: object = field(default=None, repr=False)
    validation: LabelledImages | None = None   # for every choice; never the test set
    data_source: str = ""                      # the archive (with its checksum) or the download
    # sha256 of the training set (retain + forget: pool indices, training labels, pixels): splits with
    # equal train fingerprints share their original model (RB and CF of one seed)
    train_fingerprint: str = ""
    test_forget: LabelledImages | None = None  # CF: the forgotten class's test images (test: the others')
    forget_class: int | None = None            # CF: the forgotten class

    @property
    def image_size(self) -> int:
        return int(self.retain.images.shape[-1])

    @property
    def mean(self):
        return DATASETS[self.dataset]["mean"]

    @property
    def std(self):
        return DATASETS[self.dataset]["std"]

    def official_test(self) -> LabelledImages:
        """CIFAR-10's 10,000 test images (RB) or Tiny-ImageNet-20's 1,000 val images (RC)."""
        data, _ = load_dataset(self.dataset, _TEST_PART[self.scenario], self.data_dir)
        return LabelledImages(_resize(data.images, self.image_size), data.labels)

    def to(self, device) -> "Split":
        out = Split(**{**self.__dict__})
        for name in ("retain", "forget", "test", "validation", "test_forget"):
            if getattr(self, name) is not None:
                setattr(out, name, getattr(self, name).to(device))
        out.forget_true_labels = self.forget_true_labels.to(device)
        return out

    def summary(self) -> dict:
        return {"scenario": self.scenario, "seed": self.seed, "profile": self.profile,
                "dataset": self.dataset, "retain": len(self.retain), "forget": len(self.forget),
                "test": len(self.test), **({"test_forget": len(self.test_forget)} if self.test_forget is not None else {}),
                "validation": len(self.validation) if self.validation is not None else 0,
                "image_size": self.image_size, "data_source": self.data_source, "fingerprint": self.fingerprint}


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    x = F.interpolate(images.float(), size=(size, size), mode="area")
    return x.round_().clamp_(0, 255).to(torch.uint8)


def pixel_digest(images: torch.Tensor) -> str:
    """sha256 of a uint8 image tensor's bytes (with its shape): part of the split fingerprint."""
    h = hashlib.sha256(repr(tuple(images.shape)).encode())
    h.update(images.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def _fingerprint(parts: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(parts):
        v = parts[key]
        h.update(key.encode())
        h.update(np.ascontiguousarray(v, dtype=np.int64).tobytes() if isinstance(v, np.ndarray)
                 else repr(v).encode())
    return h.hexdigest()


def make_split(scenario: str, seed: int, data_dir=None, *, profile: str = "paper",
               forget_fraction: float | None = None, forget_class: int | None = None) -> Split:
    """Build the seeded split of ``scenario`` (``"rb"``, ``"rc"`` or ``"cf"``); see the module
    docstring. ``forget_class`` (CF only): the class to forget; None draws it with the seed."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; allowed: {', '.join(SCENARIOS)}")
    seed = validate_seed(seed)
    if profile not in SPLIT_SIZES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(SPLIT_SIZES)}")
    if forget_class is not None and scenario != "cf":
        raise ValueError(f"forget_class is for the class-forgetting scenario 'cf' only, got scenario {scenario!r}")
    if scenario == "cf":
        if forget_fraction is not None:
            raise ValueError(f"forget_fraction is for 'rb' and 'rc'; class forgetting ('cf') forgets every image of "
                             f"one class (forget_class), got forget_fraction={forget_fraction!r}")
        return _class_split(seed, data_dir, profile, forget_class)
    sizes = SPLIT_SIZES[profile][scenario]
    frac = validate_fraction(sizes["forget_fraction"] if forget_fraction is None else forget_fraction)
    n_train, n_test, n_val = sizes["train"], sizes["test"], sizes["val"]
    n_val_pool = n_val if scenario == "rb" else 0  # RC validates on the official val images
    n_forget = int(round(frac * n_train))
    if not 0 < n_forget < n_train:
        raise ValueError(f"forget_fraction {frac} gives {n_forget} forget images per class out of "
                         f"{n_train}; need at least 1 and fewer than {n_train}")
    dataset = SCENARIOS[scenario]
    pool, classes = load_dataset(dataset, "train", data_dir)
    labels = pool.labels.numpy()
    rng = np.random.default_rng([seed, 0 if scenario == "rb" else 1])
    train_idx, test_idx, forget_idx, val_idx = [], [], [], []
    for c in range(len(classes)):
        members = np.flatnonzero(labels == c)
        if len(members) < n_train + n_test + n_val_pool:
            raise ValueError(f"class {c} has {len(members)} images, fewer than {n_train + n_test + n_val_pool}")
        perm = rng.permutation(members)
        chosen = perm[: n_train + n_test]
        train_c, test_c = np.sort(chosen[:n_train]), np.sort(chosen[n_train:])
        train_idx.append(train_c)
        test_idx.append(test_c)
        val_idx.append(np.sort(perm[n_train + n_test: n_train + n_test + n_val_pool]))
        if scenario == "rb" or c in (0, 1):
            forget_idx.append(np.sort(rng.choice(train_c, n_forget, replace=False)))
    train_idx, test_idx = np.concatenate(train_idx), np.concatenate(test_idx)
    forget_idx = np.concatenate(forget_idx)
    retain_idx = np.setdiff1d(train_idx, forget_idx)
    true_forget = labels[forget_idx]
    forget_labels = true_forget.copy()
    if scenario == "rc":  # swap: class-0 images labelled 1 and class-1 images labelled 0
        forget_labels = np.where(true_forget == 0, 1, 0)
    def take(idx, lab):
        return LabelledImages(_resize(pool.images[torch.from_numpy(idx)], sizes["size"]),
                              torch.from_numpy(lab.astype(np.int64)))

    retain, forget, test = take(retain_idx, labels[retain_idx]), take(forget_idx, forget_labels), take(test_idx, labels[test_idx])
    val_idx = np.concatenate(val_idx)
    if scenario == "rb":
        validation, source = take(val_idx, labels[val_idx]), pool.source
    else:  # RC uses all 500 training images of a class: the official val images validate
        vpool, _ = load_dataset(dataset, "val", data_dir)
        if n_val:  # the first n_val official val images of each class (paper-dry)
            vlab = vpool.labels.numpy()
            val_idx = np.concatenate([np.flatnonzero(vlab == c)[:n_val] for c in range(len(classes))])
            vpool = vpool.subset(val_idx)
        validation = LabelledImages(_resize(vpool.images, sizes["size"]), vpool.labels)
        source = f"{pool.source}; validation: the official val images" + (
            f" (the first {n_val} of each class)" if n_val else "")
    fp = _fingerprint({"scenario": scenario, "dataset": dataset, "size": sizes["size"], "source": source,
                       "retain": retain_idx, "forget": forget_idx, "test": test_idx, "validation": val_idx,
                       "retain_labels": labels[retain_idx], "forget_labels": forget_labels,
                       "test_labels": labels[test_idx], "validation_labels": validation.labels.numpy(),
                       **{f"{n}_pixels": pixel_digest(s.images) for n, s in
                          (("retain", retain), ("forget", forget), ("test", test), ("validation", validation))}})
    tfp = _train_fingerprint(dataset, sizes["size"], pool.source, retain_idx, labels[retain_idx], retain,
                             forget_idx, forget_labels, forget)
    what = ("removing bias: CIFAR-10, forget = {f} train images ({p:.0%} of each class)"
            if scenario == "rb" else
            "resolving confusion: Tiny-ImageNet-20, forget = {f} images of classes 0/1 with swapped labels")
    desc = (f"{scenario.upper()} ({profile}), seed {seed}: " + what.format(f=len(forget_idx), p=frac)
            + f"; retain {len(retain_idx)}, test {len(test_idx)}, validation {len(validation)}, "
            f"{sizes['size']}x{sizes['size']}; data: {source}")
    return Split(scenario=scenario, seed=seed, profile=profile, dataset=dataset,
                 num_classes=len(classes), class_names=list(classes),
                 retain=retain, forget=forget, test=test,
                 forget_true_labels=torch.from_numpy(true_forget.astype(np.int64)),
                 indices={"retain": retain_idx, "forget": forget_idx, "test": test_idx, "validation": val_idx},
                 description=desc, fingerprint=fp, data_dir=data_dir, validation=validation, data_source=source,
                 train_fingerprint=tfp)


def _train_fingerprint(dataset, size, source, retain_idx, retain_labels, retain, forget_idx, forget_labels,
                       forget) -> str:
    """sha256 of a training set (retain + forget), whatever part each image is in: pool indices in
    order, their training labels and pixels. Equal: the same original model's training data."""
    idx = np.concatenate([retain_idx, forget_idx])
    lab = np.concatenate([retain_labels, forget_labels])
    order = np.argsort(idx, kind="stable")
    images = torch.cat([retain.images, forget.images])[torch.from_numpy(order)]
    return _fingerprint({"dataset": dataset, "size": size, "source": source, "train": idx[order],
                         "train_labels": lab[order], "train_pixels": pixel_digest(images)})


def _class_split(seed: int, data_dir, profile: str, forget_class: int | None) -> Split:
    """CF: RB's pool and training set for (seed, profile), forgetting every image of one class."""
    rb = make_split("rb", seed, data_dir, profile=profile)
    n = rb.num_classes
    if forget_class is None:
        forget_class = int(np.random.default_rng([seed, 2]).integers(n))
    elif isinstance(forget_class, bool) or not isinstance(forget_class, numbers.Integral) \
            or not 0 <= forget_class < n:
        raise ValueError(f"forget_class must be an integer class index in 0..{n - 1} ({', '.join(rb.class_names)}), "
                         f"got {forget_class!r}")
    c = int(forget_class)
    train = LabelledImages(torch.cat([rb.retain.images, rb.forget.images]), torch.cat([rb.retain.labels, rb.forget.labels]))
    train_idx = np.concatenate([rb.indices["retain"], rb.indices["forget"]])
    order = np.argsort(train_idx, kind="stable")
    train_idx, train = train_idx[order], LabelledImages(train.images[torch.from_numpy(order)], train.labels[torch.from_numpy(order)])

    def part(images_labels, idx, keep):
        sel = torch.from_numpy(np.flatnonzero(keep))
        return LabelledImages(images_labels.images[sel], images_labels.labels[sel]), idx[keep]

    is_c = train.labels.numpy() == c
    retain, retain_idx = part(train, train_idx, ~is_c)
    forget, forget_idx = part(train, train_idx, is_c)
    t_c = rb.test.labels.numpy() == c
    test, test_idx = part(rb.test, rb.indices["test"], ~t_c)
    test_forget, test_forget_idx = part(rb.test, rb.indices["test"], t_c)
    validation, val_idx = part(rb.validation, rb.indices["validation"], rb.validation.labels.numpy() != c)
    fp = _fingerprint({"scenario": "cf", "dataset": rb.dataset, "size": rb.image_size, "source": rb.data_source,
                       "forget_class": c, "retain": retain_idx, "forget": forget_idx, "test": test_idx,
                       "test_forget": test_forget_idx, "validation": val_idx,
                       **{f"{k}_labels": v.labels.numpy() for k, v in (("retain", retain), ("forget", forget),
                                                                        ("test", test), ("test_forget", test_forget),
                                                                        ("validation", validation))},
                       **{f"{k}_pixels": pixel_digest(v.images) for k, v in (("retain", retain), ("forget", forget),
                                                                            ("test", test), ("test_forget", test_forget),
                                                                            ("validation", validation))}})
    tfp = _train_fingerprint(rb.dataset, rb.image_size, rb.data_source, retain_idx, retain.labels.numpy(), retain,
                             forget_idx, forget.labels.numpy(), forget)
    desc = (f"CF ({profile}), seed {seed}: class forgetting: CIFAR-10, forget = all {len(forget)} train images of "
            f"class {c} ({rb.class_names[c]}); retain {len(retain)} (the other classes), test {len(test)} other-class "
            f"+ {len(test_forget)} forget-class, validation {len(validation)} (other classes), "
            f"{rb.image_size}x{rb.image_size}; RB's training set; data: {rb.data_source}")
    return Split(scenario="cf", seed=seed, profile=profile, dataset=rb.dataset, num_classes=n,
                 class_names=list(rb.class_names), retain=retain, forget=forget, test=test,
                 forget_true_labels=forget.labels.clone(),
                 indices={"retain": retain_idx, "forget": forget_idx, "test": test_idx,
                          "test_forget": test_forget_idx, "validation": val_idx},
                 description=desc, fingerprint=fp, data_dir=data_dir, validation=validation,
                 data_source=rb.data_source, train_fingerprint=tfp, test_forget=test_forget, forget_class=c)

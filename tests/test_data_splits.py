"""Archives, cache, splits and fingerprints on the real offline data."""
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unlearnlib import data as data_mod
from unlearnlib.data import DataError, augment, load_dataset
from unlearnlib.splits import SPLIT_SIZES, make_split


def test_archives_load_with_counts_shapes_and_class_order(data_dir):
    tr, classes = load_dataset("cifar10", "train", data_dir)
    assert tr.images.shape == (50000, 3, 32, 32) and tr.images.dtype == torch.uint8
    assert classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert torch.bincount(tr.labels).tolist() == [5000] * 10
    te, _ = load_dataset("cifar10", "test", data_dir)
    assert te.images.shape == (10000, 3, 32, 32) and torch.bincount(te.labels).tolist() == [1000] * 10
    ti, wn = load_dataset("tiny-imagenet-20", "train", data_dir)
    assert ti.images.shape == (10000, 3, 64, 64) and torch.bincount(ti.labels).tolist() == [500] * 20
    assert wn[:2] == ["n01443537", "n01629819"] and wn == sorted(wn)
    va, _ = load_dataset("tiny-imagenet-20", "val", data_dir)
    assert va.images.shape == (1000, 3, 64, 64) and torch.bincount(va.labels).tolist() == [50] * 20


def test_second_load_uses_the_cache(data_dir, tmp_path, monkeypatch):
    first, _ = load_dataset("cifar10", "test", data_dir, cache=tmp_path)
    assert len(list(tmp_path.glob("cifar10-test-*.safetensors"))) == 1

    def boom(*a, **k):
        raise AssertionError("decoded again instead of reading the cache")
    monkeypatch.setattr(data_mod, "_decode_zip", boom)
    second, _ = load_dataset("cifar10", "test", data_dir, cache=tmp_path)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)


def test_a_cache_damaged_after_a_good_load_is_detected_and_rebuilt(data_dir, tmp_path):
    """The cached pixels are zeroed on disk (metadata kept): the stored sha256 no longer matches,
    so the cache is rebuilt from the archive with a warning naming the file, never used."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save
    first, _ = load_dataset("cifar10", "test", data_dir, cache=tmp_path)
    (cfile,) = tmp_path.glob("cifar10-test-*.safetensors")
    with safe_open(str(cfile), framework="pt") as f:
        meta = f.metadata()
    t = load_file(str(cfile))
    t["images"].zero_()
    cfile.write_bytes(save(t, metadata=meta))
    with pytest.warns(RuntimeWarning, match=f"cache {cfile} is damaged .its payload does not match the sha256"):
        again, _ = load_dataset("cifar10", "test", data_dir, cache=tmp_path)
    assert torch.equal(again.images, first.images) and again.images.float().mean() > 50
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache is clean
        load_dataset("cifar10", "test", data_dir, cache=tmp_path)


def test_missing_archive_and_unknown_names(tmp_path):
    with pytest.raises(DataError, match="cifar10-train.zip not found in"):
        load_dataset("cifar10", "train", tmp_path, cache=tmp_path / "c")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; allowed: cifar10, tiny-imagenet-20"):
        load_dataset("mnist", "train")
    with pytest.raises(ValueError, match="has no part 'val'"):
        load_dataset("cifar10", "val")


def test_corrupted_archive_names_the_file_and_never_poisons_the_cache(data_dir, tmp_path):
    bad = tmp_path / "data"
    bad.mkdir()
    blob = (data_dir / "cifar10-test.zip").read_bytes()
    (bad / "cifar10-test.zip").write_bytes(blob[: len(blob) // 2])  # truncated
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"cifar10-test.zip has sha256 .*corrupted or truncated\. Delete it"):
        load_dataset("cifar10", "test", bad, cache=cache)
    assert not cache.exists() or not any(cache.iterdir())


def test_augment_is_seeded_and_keeps_shape():
    x = torch.rand(8, 3, 32, 32)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = augment(x, g1), augment(x, g2)
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, x)


@pytest.mark.parametrize("scenario", ["rb", "rc"])
def test_paper_split_sizes_disjoint_and_stable(scenario, data_dir):
    s = make_split(scenario, 0, data_dir)
    idx = s.indices
    assert not (set(idx["retain"]) & set(idx["forget"]) or set(idx["retain"]) & set(idx["test"])
                or set(idx["forget"]) & set(idx["test"]))
    if scenario == "rb":
        assert (len(s.retain), len(s.forget), len(s.test)) == (4500, 500, 1000)
        assert torch.bincount(s.forget.labels, minlength=10).tolist() == [50] * 10
        assert torch.bincount(s.test.labels, minlength=10).tolist() == [100] * 10
        assert torch.equal(s.forget.labels, s.forget_true_labels)
        assert len(s.official_test()) == 10000
    else:
        assert (len(s.retain), len(s.forget), len(s.test)) == (8800, 200, 1000)
        assert s.image_size == 64
        # the forget labels really are swapped: true class 0 labelled 1 and vice versa
        assert torch.bincount(s.forget_true_labels).tolist() == [100, 100]
        assert torch.equal(s.forget.labels, 1 - s.forget_true_labels)
        assert torch.bincount(s.test.labels, minlength=20).tolist() == [50] * 20
        retain_counts = torch.bincount(s.retain.labels, minlength=20).tolist()
        assert retain_counts[:2] == [350, 350] and retain_counts[2:] == [450] * 18
        assert len(s.official_test()) == 1000
    # the validation set: disjoint from everything reported, as many per class as the issue asks
    if scenario == "rb":
        assert not set(idx["validation"]) & (set(idx["retain"]) | set(idx["forget"]) | set(idx["test"]))
        assert torch.bincount(s.validation.labels, minlength=10).tolist() == [100] * 10
    else:  # RC uses all 500 training images of a class: Tiny-ImageNet's own val images validate
        assert len(idx["validation"]) == 0 and torch.equal(s.validation.labels, s.official_test().labels)
        assert torch.bincount(s.validation.labels, minlength=20).tolist() == [50] * 20
    assert "sha256" in s.data_source and s.data_source in s.description
    again = make_split(scenario, 0, data_dir)
    assert again.fingerprint == s.fingerprint and len(s.fingerprint) == 64
    assert make_split(scenario, 1, data_dir).fingerprint != s.fingerprint


def test_paper_dry_split_is_the_paper_split_in_miniature(data_dir):
    """The dry run's splits: the paper's image sizes and scenario rules on a few images per class;
    RC validates on the first 2 official val images of each class (the paper: all 50)."""
    rb = make_split("rb", 0, data_dir, profile="paper-dry")
    assert (len(rb.retain), len(rb.forget), len(rb.test), len(rb.validation), rb.image_size) == (180, 20, 50, 50, 32)
    assert torch.bincount(rb.forget.labels, minlength=10).tolist() == [2] * 10
    rc = make_split("rc", 0, data_dir, profile="paper-dry")
    assert (len(rc.retain), len(rc.forget), len(rc.test), rc.image_size) == (194, 6, 40, 64)
    assert torch.equal(rc.forget.labels, 1 - rc.forget_true_labels)
    official = rc.official_test()
    first2 = torch.cat([torch.nonzero(official.labels == c).flatten()[:2] for c in range(20)])
    assert rc.indices["validation"].tolist() == first2.tolist()
    assert torch.equal(rc.validation.labels, official.labels[first2])
    assert torch.equal(rc.validation.images, official.images[first2])
    assert "the first 2 of each class" in rc.description
    assert rc.fingerprint != make_split("rc", 0, data_dir, profile="paper").fingerprint


def test_two_seeds_give_different_forget_sets(data_dir):
    a, b = make_split("rb", 0, data_dir, profile="quick"), make_split("rb", 1, data_dir, profile="quick")
    assert set(a.indices["forget"]) != set(b.indices["forget"])


@pytest.mark.parametrize("seed", [-1, 1.5, "two", True, None])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        make_split("rb", seed)


@pytest.mark.parametrize("frac", [0, 1, -0.1, 1.5, "0.1", float("nan")])
def test_bad_forget_fraction(frac):
    with pytest.raises(ValueError, match=r"open interval \(0, 1\)"):
        make_split("rb", 0, forget_fraction=frac)


def test_bad_scenario_and_profile():
    with pytest.raises(ValueError, match="unknown scenario 'foo'; allowed: rb, rc, cf"):
        make_split("foo", 0)
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        make_split("rb", 0, profile="fast")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=st.one_of(st.sampled_from(["rb", "rc", "cf"]), st.text(max_size=4)),
       seed=st.one_of(st.integers(-5, 2**40), st.floats(allow_nan=True), st.text(max_size=3), st.none()),
       frac=st.one_of(st.floats(-1, 2), st.floats(), st.none(), st.text(max_size=3)))
def test_fuzz_split_builder_gives_split_or_value_error(data_dir, scenario, seed, frac):
    try:
        s = make_split(scenario, seed, data_dir, profile="quick", forget_fraction=frac)
    except ValueError:
        return
    sizes = SPLIT_SIZES["quick"]["rb" if scenario == "cf" else scenario]
    assert len(s.retain) + len(s.forget) == sizes["train"] * s.num_classes
    assert len(s.test) + (len(s.test_forget) if scenario == "cf" else 0) == sizes["test"] * s.num_classes
    assert not set(s.indices["retain"]) & set(s.indices["forget"])
    assert len(s.forget) > 0

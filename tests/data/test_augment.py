"""Augmentation: the same draws for the same seed, what each change does (against a plain loop),
and a resumed run that augments exactly as an unbroken one."""

import numpy as np
import pytest

from yamlnet.data.augment import Augmenter, shift_images
from yamlnet.train import train


def test_shift_matches_a_plain_loop(rng):
    x = rng.standard_normal((5, 6, 7, 2))
    offsets = rng.integers(-2, 3, (2, 5))
    expected = np.zeros_like(x)
    for i in range(5):
        for r in range(6):
            for c in range(7):
                source_r, source_c = r - offsets[0, i], c - offsets[1, i]
                if 0 <= source_r < 6 and 0 <= source_c < 7:
                    expected[i, r, c] = x[i, source_r, source_c]
    assert np.array_equal(shift_images(x, offsets, 2), expected)


@pytest.mark.parametrize("flip, axis", [("horizontal", 2), ("vertical", 1)])
def test_flips_mirror_about_half_the_images(flip, axis, rng):
    x = rng.standard_normal((400, 4, 5, 1))
    out = Augmenter({"flip": flip, "shift": 0, "noise": 0.0}, np.random.default_rng(0))(x)
    flipped = [np.array_equal(o, np.flip(i, axis=axis - 1)) for o, i in zip(out, x)]
    kept = [np.array_equal(o, i) for o, i in zip(out, x)]
    assert all(a or b for a, b in zip(flipped, kept)) and 150 < sum(flipped) < 250


def test_nothing_asked_nothing_changed_and_the_same_seed_the_same_draws(rng):
    x = rng.standard_normal((8, 4, 4, 3)).astype(np.float32)
    assert Augmenter({"flip": "none", "shift": 0, "noise": 0.0}, np.random.default_rng(0))(x) is x
    settings = {"flip": "both", "shift": 1, "noise": 0.1}
    a = Augmenter(settings, np.random.default_rng(3))(x)
    b = Augmenter(settings, np.random.default_rng(3))(x)
    assert np.array_equal(a, b) and a.dtype == np.float32 and not np.array_equal(a, x)


def test_a_resumed_augmented_run_ends_as_an_unbroken_one(tmp_path):
    from yamlnet.progress import Reporter

    class Crash(Reporter):
        def end_epoch(self, record, epochs):
            if record["epoch"] == 1:
                raise RuntimeError("power cut")

    config = {"input": [8, 8, 1], "layers": [{"type": "conv2d", "filters": 4, "size": 3, "activation": "relu"},
                                             {"type": "dense", "units": 10}, {"type": "softmax"}],
              "data": {"augment": {"flip": "horizontal", "shift": 1, "noise": 0.05}},
              "training": {"epochs": 3, "batch_size": 128, "learning_rate": 0.05, "optimizer": "momentum"}}
    whole = train(config, out=tmp_path / "whole").run_dir
    with pytest.raises(RuntimeError):
        train(config, out=tmp_path / "crashed", reporter=Crash())
    resumed = train(resume=tmp_path / "crashed").run_dir
    with np.load(whole / "checkpoints" / "last.npz") as a, np.load(resumed / "checkpoints" / "last.npz") as b:
        for key in a.files:
            if key.startswith("params/"):
                assert np.array_equal(a[key], b[key]), key
    plain = train({**config, "data": {}}, out=tmp_path / "plain").run_dir
    with np.load(whole / "checkpoints" / "last.npz") as a, np.load(plain / "checkpoints" / "last.npz") as b:
        assert not np.array_equal(a["params/dense1/W"], b["params/dense1/W"])  # augmentation did something


def test_the_default_normalization_learns_zero_centred_data(tmp_path):
    from yamlnet.data.shapes import generate
    x, y = generate(600, (12, 12, 1), seed=0)
    np.savez(tmp_path / "signed.npz", x=x - 0.5 * x.max(), y=y)  # a signed image, centred on 0
    config = {"input": [12, 12, 1], "layers": [
        {"type": "conv2d", "filters": 8, "size": 3, "padding": "same", "activation": "relu"},
        {"type": "maxpool2d", "size": 2}, {"type": "dense", "units": 10}, {"type": "softmax"}],
        "data": {"dataset": "npz", "path": str(tmp_path / "signed.npz")},
        "training": {"epochs": 15, "batch_size": 32}}
    result = train(config, out=tmp_path / "run")
    assert result.final["val_accuracy"] > 0.7  # chance is 0.1; min–max scaling got 0.62 here, standardizing 0.78
    from yamlnet.config import load_config
    assert load_config(config)["data"]["normalization"] == "standardize"

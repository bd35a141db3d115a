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
              "data": {"augment": {"flip": "horizontal", "shift": 1, "noise": 0.05, "rotate": 10,
                                   "scale": [0.9, 1.1], "crop": 1, "brightness": 0.2, "contrast": 0.2, "cutout": 3}},
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


def test_rotation_and_zoom_match_a_plain_loop(rng):
    from reference import rotate_and_zoom_naive
    from yamlnet.data.augment import rotate_and_zoom
    x = rng.standard_normal((4, 7, 6, 2))
    angles, zooms = rng.uniform(-np.pi, np.pi, 4), rng.uniform(0.6, 1.8, 4)
    out = rotate_and_zoom(x, angles, zooms)
    for image, angle, zoom, got in zip(x, angles, zooms, out):
        np.testing.assert_allclose(got, rotate_and_zoom_naive(image, angle, zoom), atol=1e-12)


def test_a_quarter_turn_is_rot90_and_no_turn_is_the_image(rng):
    from yamlnet.data.augment import rotate_and_zoom
    x = rng.standard_normal((2, 5, 5, 1))
    np.testing.assert_allclose(rotate_and_zoom(x, np.zeros(2), np.ones(2)), x, atol=1e-12)
    turned = rotate_and_zoom(x, np.full(2, np.pi / 2), np.ones(2))
    assert any(np.allclose(turned, np.rot90(x, k, axes=(1, 2)), atol=1e-12) for k in (1, 3))


def test_colour_changes_are_torchvisions_on_raw_values(rng):
    """ColorJitter's definitions (torchvision.transforms.functional), written out; hue through colorsys."""
    import colorsys
    from yamlnet.data.augment import grey, turn_hue
    raw = rng.uniform(0, 255, (3, 4, 5, 3))
    luma = raw @ np.array([0.2989, 0.587, 0.114])
    np.testing.assert_allclose(grey(raw)[..., 0], luma)
    turns = np.array([0.1, -0.3, 0.45])
    expected = np.array([[[colorsys.hsv_to_rgb((colorsys.rgb_to_hsv(*pixel / 255)[0] + t) % 1,
                                               *colorsys.rgb_to_hsv(*pixel / 255)[1:]) for pixel in row]
                          for row in image] for image, t in zip(raw, turns)]) * 255
    np.testing.assert_allclose(turn_hue(raw, turns), expected, atol=1e-9)
    shift, scale = np.array([100.0, 120.0, 90.0]), np.array([60.0, 50.0, 70.0])
    x = (raw - shift) / scale
    settings = {"brightness": 0.4, "contrast": 0.5, "saturation": 0.3}
    out = Augmenter(settings, np.random.default_rng(5), shift, scale, (0.0, 255.0))(x) * scale + shift
    draws = np.random.default_rng(5)
    b, c, s = (draws.uniform(1 - v, 1 + v, 3)[:, None, None, None] for v in (0.4, 0.5, 0.3))
    step = np.clip(raw * b, 0, 255)  # each step clipped, as torchvision clips to its 0..1
    step = np.clip(c * step + (1 - c) * (step @ np.array([0.2989, 0.587, 0.114])).mean(axis=(1, 2))[:, None, None, None],
                   0, 255)
    step = np.clip(s * step + (1 - s) * (step @ np.array([0.2989, 0.587, 0.114]))[..., None], 0, 255)
    np.testing.assert_allclose(out, step, atol=1e-9)


def test_cutout_zeroes_one_square_per_image_clipped_at_the_edges():
    from yamlnet.data.augment import cut_out
    x = np.ones((3, 8, 8, 2))
    out = cut_out(x, np.array([4, 0, 7]), np.array([4, 0, 3]), 4)
    assert [(image[..., 0] == 0).sum() for image in out] == [16, 4, 12]
    assert np.all(out[0, 2:6, 2:6] == 0)


def test_crop_is_a_shift_within_the_padding(rng):
    x = rng.standard_normal((200, 6, 6, 1)) + 5
    out = Augmenter({"crop": 2}, np.random.default_rng(1))(x)
    moved = [not np.array_equal(o, i) for o, i in zip(out, x)]
    assert sum(moved) > 150
    for o, i in zip(out, x):  # some shift (dy, dx) in ±2 of the original, zeros where nothing came in
        assert any(np.array_equal(o, shift_images(i[None], np.array([[dy], [dx]]), 2)[0])
                   for dy in range(-2, 3) for dx in range(-2, 3))


@pytest.mark.parametrize("augment, message", [
    ({"scale": [2, 1]}, "data.augment.scale: [lo, hi] must have lo ≤ hi, got [2, 1]"),
    ({"rotate": -5}, "data.augment.rotate: must be at least 0, got -5"),
    ({"hue": 0.1}, "data.augment.hue: changes colours, so it needs RGB images (n_C = 3), and the input has 1 channel(s)"),
])
def test_malformed_augmentation_is_one_located_line(augment, message):
    import yamlnet
    with pytest.raises(yamlnet.ConfigError) as error:
        yamlnet.load_config({"input": [8, 8, 1], "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}],
                             "data": {"augment": augment}})
    assert str(error.value).endswith(message)


def test_everything_at_once_trains(tmp_path):
    config = {"input": [12, 12, 3], "layers": [{"type": "conv2d", "filters": 4, "size": 3, "activation": "relu"},
                                               {"type": "dense", "units": 10}, {"type": "softmax"}],
              "data": {"dataset": "shapes", "n_samples": 100, "augment": {
                  "flip": "horizontal", "rotate": 15, "scale": [0.9, 1.1], "crop": 2, "brightness": 0.2,
                  "contrast": 0.2, "saturation": 0.2, "hue": 0.05, "cutout": 3, "noise": 0.05}},
              "training": {"epochs": 2}}
    result = train(config, out=tmp_path / "run")
    assert all(np.isfinite(record["loss"]) for record in result.metrics)


def test_a_move_inside_the_resampling_is_the_shift(rng):
    from yamlnet.data.augment import rotate_and_zoom
    x = rng.standard_normal((6, 7, 5, 2))
    offsets = rng.integers(-3, 4, (2, 6))
    np.testing.assert_allclose(rotate_and_zoom(x, np.zeros(6), np.ones(6), offsets), shift_images(x, offsets, 3),
                               atol=1e-12)

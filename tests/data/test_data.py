import gzip

import numpy as np
import pytest

from yamlnet.config import load_config
from yamlnet.data import load_data
from yamlnet.data.digits import load_digits
from yamlnet.data.mnist import read_idx
from yamlnet.data.shapes import generate
from yamlnet.errors import DataError
from yamlnet.plan import make_layers


def load(config):
    return load_data(config, make_layers(config)[-1].output_shape[0])


def config_for(data, input_shape=(8, 8, 1), units=10, **training):
    return load_config({"input": list(input_shape), "layers": [{"type": "flatten"}, {"type": "dense", "units": units}],
                        "data": data, "training": training})


def test_digits_ship_with_the_package():
    x, y, _, _ = load_digits(None, None, 0)
    assert x.shape == (1797, 8, 8, 1) and x.max() == 16 and x.min() == 0
    assert sorted(np.unique(y)) == list(range(10))


def test_split_and_scale_use_the_training_part_only():
    splits = load(config_for({"dataset": "digits", "validation_split": 0.2, "normalization": "scale"}))
    assert len(splits.train) + len(splits.val) == 1797 and len(splits.val) == 359
    assert not set(splits.train) & set(splits.val)
    assert splits.x[splits.train].min() == 0 and splits.x[splits.train].max() == 1
    again = load(config_for({"dataset": "digits", "validation_split": 0.2}))
    assert np.array_equal(again.val, splits.val)
    other = load(config_for({"dataset": "digits", "validation_split": 0.2}, seed=5))
    assert not np.array_equal(other.val, splits.val)


def test_standardize_per_channel_from_training_part():
    splits = load(config_for({"dataset": "shapes", "n_samples": 200, "normalization": "standardize"},
                                  input_shape=(9, 7, 3)))
    train = splits.x[splits.train]
    assert np.allclose(train.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    assert np.allclose(train.std(axis=(0, 1, 2)), 1, atol=1e-4)


def test_shapes_are_reproducible_balanced_and_any_size():
    x, y = generate(500, (13, 11, 2), seed=4)
    x2, y2 = generate(500, (13, 11, 2), seed=4)
    assert x.shape == (500, 13, 11, 2) and x.dtype == np.float32
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert 0 <= x.min() and x.max() <= 1
    assert np.bincount(y, minlength=10).min() > 25
    assert not np.array_equal(generate(500, (13, 11, 2), seed=5)[0], x)


def test_shapes_test_set():
    splits = load(config_for({"dataset": "shapes", "n_samples": 100, "n_test": 30}, input_shape=(10, 10, 1)))
    assert len(splits.x) == 100 and splits.x_test.shape == (30, 10, 10, 1)


def write_idx(path, array, magic_type=0x08):
    header = bytes([0, 0, magic_type, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_idx_files(tmp_path, suffix):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (50, 28, 28)), rng.integers(0, 10, 50)
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images[:20])
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels[:20])
    assert np.array_equal(read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}"), images)
    splits = load(config_for({"dataset": "mnist", "path": str(tmp_path)}, input_shape=(28, 28, 1)))
    assert splits.x.shape == (50, 28, 28, 1) and splits.x_test.shape == (20, 28, 28, 1)
    (tmp_path / f"train-labels-idx1-ubyte{suffix}").unlink()
    with pytest.raises(DataError, match="holds no train-labels-idx1-ubyte"):
        load(config_for({"dataset": "mnist", "path": str(tmp_path)}, input_shape=(28, 28, 1)))


def test_truncated_idx_file(tmp_path):
    write_idx(tmp_path / "x", np.zeros((5, 4, 4)))
    (tmp_path / "x").write_bytes((tmp_path / "x").read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "x")


def npz_config(tmp_path, input_shape=(4, 4, 1), units=3, **arrays):
    np.savez(tmp_path / "d.npz", **arrays)
    return config_for({"dataset": "npz", "path": str(tmp_path / "d.npz")}, input_shape=input_shape, units=units)


def test_npz_with_3d_images(tmp_path):
    x, y = np.random.default_rng(0).random((20, 4, 4)), np.arange(20) % 3
    splits = load(npz_config(tmp_path, x=x, y=y))
    assert splits.x.shape == (20, 4, 4, 1)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((5, 5, 4)), "y": np.zeros(5, int)}, "images are 5 × 4 × 1 but the model's input is 4 × 4 × 1"),
    ({"x": np.zeros((5, 4, 4)), "y": np.array([0, 1, 2, 3, 0])},
     "labels run from 0 to 3 but the model has 3 outputs, so labels must be 0..2"),
    ({"x": np.zeros((5, 4, 4)), "y": np.array([0, -1, 2, 1, 0])}, "labels run from -1 to 2"),
    ({"x": np.full((5, 4, 4), np.nan), "y": np.zeros(5, int)}, "image 0 holds NaN or infinity"),
    ({"x": np.zeros((5, 4, 4)), "y": np.zeros(6, int)}, "5 images but 6 labels"),
    ({"x": np.zeros((5, 4, 4)), "y": np.full(5, 0.5)}, "labels must be whole numbers"),
    ({"x": np.zeros((5, 4, 4)), "labels": np.zeros(5)}, "has no array 'y'; it holds labels, x"),
    ({"x": np.array(["a"] * 80).reshape(5, 4, 4), "y": np.zeros(5, int)}, "images must be numbers"),
])
def test_npz_data_that_does_not_fit_is_one_clear_error(tmp_path, arrays, message):
    with pytest.raises(DataError) as info:
        load(npz_config(tmp_path, **arrays))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_class_count_must_match_the_last_layer():
    with pytest.raises(DataError, match="the digits data set has 10 classes but the model has 5 outputs"):
        load(config_for({"dataset": "digits"}, units=5))
    with pytest.raises(DataError, match="no such data file"):
        load(config_for({"dataset": "npz", "path": "nowhere.npz"}))

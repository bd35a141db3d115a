"""add and concat: forward by definition, backward against central differences, shape rules."""

import numpy as np
import pytest
from gradcheck import numerical_gradient, rel_error

import yamlnet
from yamlnet.errors import ShapeError


def join(layer, shapes, dtype="float64"):
    """A model whose last layer joins one conv branch per shape (each reading the input) — built,
    and the join layer returned with the branch outputs it would read."""
    n_h, n_w = shapes[0][:2] if len(shapes[0]) == 3 else (4, 4)
    branches = [({"name": f"b{i}", "type": "conv2d", "filters": shape[-1], "size": 1, "inputs": "input"}
                 if len(shape) == 3 else {"name": f"b{i}", "type": "dense", "units": shape[0], "inputs": "input"})
                for i, shape in enumerate(shapes)]
    model = yamlnet.build_model({"input": [n_h, n_w, 1], "layers": [*branches, {**layer, "inputs": [b["name"] for b in branches]}],
                                 "training": {"dtype": dtype}})
    built = model.layers[-1]
    built.needs_input_grad = True
    return built


def check_join_gradients(layer, xs, rng):
    out = layer.forward(xs, training=True)
    upstream = rng.standard_normal(out.shape)
    grads = layer.backward(upstream.copy())
    assert len(grads) == len(xs)
    for x, grad in zip(xs, grads):
        def loss():
            return float(np.sum(layer.forward(xs, training=True) * upstream))
        assert rel_error(grad, numerical_gradient(loss, x)) < 1e-6  # the tolerance of every layer check


@pytest.mark.parametrize("activation", ["linear", "relu", "tanh"])
def test_add_sums_then_applies_g(activation, rng):
    layer = join({"type": "add", "activation": activation}, [(3, 4, 2)] * 3)
    xs = [rng.standard_normal((2, 3, 4, 2)) for _ in range(3)]
    expected = {"linear": lambda z: z, "relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}[activation](sum(xs))
    assert np.allclose(layer.forward(xs), expected)
    check_join_gradients(layer, xs, rng)


def test_concat_joins_volumes_along_channels_and_vectors_end_to_end(rng):
    layer = join({"type": "concat"}, [(3, 4, 2), (3, 4, 5), (3, 4, 1)])
    assert layer.output_shape == (3, 4, 8)
    xs = [rng.standard_normal((2, 3, 4, c)) for c in (2, 5, 1)]
    out = layer.forward(xs)
    assert np.array_equal(out[..., :2], xs[0]) and np.array_equal(out[..., 2:7], xs[1])
    check_join_gradients(layer, xs, rng)
    vectors = join({"type": "concat"}, [(3,), (6,)])
    assert vectors.output_shape == (9,)
    check_join_gradients(vectors, [rng.standard_normal((2, 3)), rng.standard_normal((2, 6))], rng)


@pytest.mark.parametrize("layer, shapes, message", [
    ({"type": "add"}, [(4, 4, 2), (4, 4, 3)], "add needs inputs of one shape: b0 is 4 × 4 × 2 but b1 is 4 × 4 × 3"),
    ({"type": "add"}, [(4, 4, 2), (8,)], "b0 is 4 × 4 × 2 but b1 is 8"),
    ({"type": "concat"}, [(4, 4, 2), (5,)], "concat cannot join a volume and a vector: b0 is 4 × 4 × 2, b1 is a vector of 5"),
])
def test_joins_that_do_not_fit_name_both_layers_and_shapes(layer, shapes, message):
    with pytest.raises(ShapeError, match=message):
        join(layer, shapes)


def test_concat_of_volumes_of_different_sizes_names_both():
    with pytest.raises(ShapeError, match="concat joins volumes of one n_H × n_W: a is 6 × 6 × 2 but b is 3 × 3 × 2"):
        yamlnet.build_model({"input": [6, 6, 1], "layers": [
            {"name": "a", "type": "conv2d", "filters": 2, "size": 1},
            {"name": "b", "type": "maxpool2d", "size": 2},
            {"type": "concat", "inputs": ["a", "b"]}]})

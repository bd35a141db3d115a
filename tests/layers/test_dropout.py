import numpy as np
from conftest import check_layer_gradients, make_layer


def test_identity_when_not_training(rng):
    layer = make_layer((4, 4, 2), {"type": "dropout", "rate": 0.5})
    x = rng.standard_normal((3, 4, 4, 2))
    assert np.array_equal(layer.forward(x, training=False), x)


def test_inverted_scaling_keeps_the_mean(rng):
    layer = make_layer((50, 50, 4), {"type": "dropout", "rate": 0.3})
    out = layer.forward(np.ones((4, 50, 50, 4)), training=True)
    assert set(np.unique(out)) <= {0.0, 1 / 0.7}
    assert abs(out.mean() - 1) < 0.02
    assert abs((out == 0).mean() - 0.3) < 0.02


def test_gradients_match_numerical(rng):
    check_layer_gradients(make_layer((3, 3, 2), {"type": "dropout", "rate": 0.4}), rng.standard_normal((2, 3, 3, 2)))

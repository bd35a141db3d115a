import numpy as np
from conftest import check_layer_gradients, make_layer


def test_probabilities_sum_to_one_and_survive_huge_logits():
    layer = make_layer((3,), {"type": "softmax"}, dtype="float32")
    out = layer.forward(np.array([[1e30, 0, -1e30], [1, 2, 3]], dtype=np.float32))
    assert np.all(np.isfinite(out)) and np.allclose(out.sum(axis=1), 1)


def test_gradients_match_numerical(rng):
    check_layer_gradients(make_layer((5,), {"type": "softmax"}), rng.standard_normal((3, 5)))

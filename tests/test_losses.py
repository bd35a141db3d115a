import numpy as np
from gradcheck import numerical_gradient, rel_error

from yamlnet.losses import softmax_cross_entropy


def test_gradient_matches_numerical(rng):
    logits = rng.standard_normal((4, 6))
    labels = np.array([0, 5, 2, 2])
    _, grad, _ = softmax_cross_entropy(logits, labels)
    numerical = numerical_gradient(lambda: softmax_cross_entropy(logits, labels)[0], logits)
    assert rel_error(grad, numerical) < 1e-7


def test_huge_logits_give_a_finite_loss():
    logits = np.array([[1e30, -1e30, 0], [0, 0, 3e38]], dtype=np.float32)
    loss, grad, probs = softmax_cross_entropy(logits, np.array([1, 0]))
    assert np.isfinite(loss) and np.all(np.isfinite(grad)) and np.all(np.isfinite(probs))


def test_uniform_logits_cost_log_of_the_class_count():
    loss, _, _ = softmax_cross_entropy(np.zeros((3, 10)), np.array([0, 4, 9]))
    assert np.isclose(loss, np.log(10))

import importlib
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import yamlnet  # noqa: E402
from gradcheck import numerical_gradient, rel_error  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def make_layer(input_shape, layer: dict, dtype="float64", seed=0):
    """One built layer of ``layer``'s type, resolved through the schema like any model file."""
    model = yamlnet.build_model({"input": list(input_shape) if len(input_shape) == 3 else [1, 1, input_shape[0]],
                                 "layers": ([{"type": "flatten"}] if len(input_shape) == 1 else []) + [layer],
                                 "training": {"dtype": dtype, "seed": seed}})
    built = model.layers[-1]
    built.needs_input_grad = True
    built.rng = np.random.default_rng(seed)
    return built


def check_layer_gradients(layer, x, *, tolerance=1e-6, seed=1):
    """Compare a layer's backward with central differences of sum(forward(x) · R)."""
    rng = np.random.default_rng(seed)
    out = layer.forward(x, training=True)
    upstream = rng.standard_normal(out.shape)
    dx = layer.backward(upstream.copy())

    def loss():
        if layer.type == "dropout":
            layer.rng = np.random.default_rng(seed)
        return float(np.sum(layer.forward(x, training=True) * upstream))

    if layer.type == "dropout":
        layer.rng = np.random.default_rng(seed)
        layer.forward(x, training=True)
        dx = layer.backward(upstream.copy())
    assert rel_error(dx, numerical_gradient(loss, x)) < tolerance
    for key, param in layer.params.items():
        layer.forward(x, training=True)
        layer.backward(upstream.copy())
        analytic = layer.grads[key].copy()
        assert rel_error(analytic, numerical_gradient(loss, param)) < tolerance, key


@contextmanager
def deadline_of(seconds: int):
    """Fail with TimeoutError if the block runs ``seconds``: a guard against a hang, not a timing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def hung(signum, frame):
        raise TimeoutError(f"hung for {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(autouse=True)
def deadline():
    """A test that hangs fails after ten minutes instead of stalling CI (the slowest takes seconds)."""
    with deadline_of(600):
        yield


@pytest.fixture(autouse=True, scope="session")
def image_cache(tmp_path_factory):
    """Disk caches of test folders (data.cache: disk) go to a temporary folder, not ~/.cache/yamlnet."""
    os.environ["YAMLNET_CACHE_DIR"] = str(tmp_path_factory.mktemp("image-cache"))
    return os.environ["YAMLNET_CACHE_DIR"]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def minimal_layer(type_name: str) -> dict:
    """The smallest valid mapping of a registered layer type: its required keys at their lowest values."""
    from yamlnet.layers import LAYERS

    cls = LAYERS[type_name]
    layer = {"type": type_name}
    for key in cls.required:
        schema = cls.hyperparameters[key]
        options = schema.get("anyOf", [schema])
        first = options[0]
        layer[key] = first["enum"][0] if "enum" in first else first.get("minimum", 1)
    return layer


def reference_module(name: str):
    """Import an independent reference implementation (PyTorch, onnxruntime) for a test module.
    Outside CI a missing one skips the module, so a new user's test run stays light; under CI
    (``CI=true``, set by the CI runner) it fails, so the reference tests can never silently stop running."""
    if os.environ.get("CI", "").lower() == "true":
        return importlib.import_module(name)
    return pytest.importorskip(name)

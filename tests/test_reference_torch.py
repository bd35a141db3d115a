"""yamlnet against an independent implementation — PyTorch, when it is installed (it is never a
dependency): random models, the same weights, outputs and every gradient compared."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import yamlnet
from conftest import reference_module

torch = reference_module("torch")
from torch import nn  # noqa: E402

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class ChannelsLastFlatten(nn.Module):
    def forward(self, x):  # yamlnet flattens in H, W, C order
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def torch_twin(model):
    modules = []
    for layer in model.layers:
        if layer.type == "conv2d":
            conv = nn.Conv2d(layer.input_shape[2], layer.config["filters"], layer.f, layer.s, layer.p)
            conv.weight.data = torch.from_numpy(layer.params["W"].transpose(3, 2, 0, 1).copy())
            conv.bias.data = torch.from_numpy(layer.params["b"].copy())
            modules.append(conv)
        elif layer.type in ("maxpool2d", "avgpool2d"):
            pool = nn.MaxPool2d if layer.type == "maxpool2d" else nn.AvgPool2d
            modules.append(pool(layer.f, layer.s, layer.p))
        elif layer.type == "flatten" or (layer.type == "dense" and len(layer.input_shape) == 3):
            modules.append(ChannelsLastFlatten())
        if layer.type == "dense":
            linear = nn.Linear(int(np.prod(layer.input_shape)), layer.config["units"])
            linear.weight.data = torch.from_numpy(layer.params["W"].T.copy())
            linear.bias.data = torch.from_numpy(layer.params["b"].copy())
            modules.append(linear)
        activation = layer.activation
        if activation in ACTIVATIONS:
            modules.append(ACTIVATIONS[activation]())
    return nn.Sequential(*modules)


def torch_grads(net, model):
    grads, modules = {}, iter(m for m in net if isinstance(m, (nn.Conv2d, nn.Linear)))
    for layer in model.layers:
        if layer.params:
            module = next(modules)
            weight = module.weight.grad.numpy()
            grads[f"{layer.name}/W"] = weight.transpose(2, 3, 1, 0) if layer.type == "conv2d" else weight.T
            grads[f"{layer.name}/b"] = module.bias.grad.numpy()
    return grads


def relative(a, b):
    return float(np.max(np.abs(a - b)) / max(1e-12, np.max(np.abs(b))))


layer = st.one_of(
    st.fixed_dictionaries({"type": st.just("conv2d"), "filters": st.integers(1, 5), "size": st.integers(1, 4),
                           "stride": st.integers(1, 3), "padding": st.integers(0, 2),
                           "activation": st.sampled_from(["linear", "relu", "tanh", "sigmoid", "leaky_relu"])}),
    st.fixed_dictionaries({"type": st.sampled_from(["maxpool2d", "avgpool2d"]), "size": st.integers(1, 3),
                           "stride": st.integers(1, 3), "padding": st.integers(0, 1)}),
)


@settings(max_examples=int(os.environ.get("YAMLNET_EXAMPLES", 60)), deadline=None,
          derandomize=not os.environ.get("YAMLNET_RANDOM"), database=None)
@given(st.lists(layer, min_size=1, max_size=3), st.integers(5, 13), st.integers(5, 13), st.integers(1, 3),
       st.sampled_from(["float32", "float64"]), st.integers(0, 10**6))
def test_outputs_and_gradients_agree_with_pytorch(layers, n_h, n_w, n_c, dtype, seed):
    config = {"input": [n_h, n_w, n_c], "layers": [*layers, {"type": "dense", "units": 4, "activation": "tanh"},
                                                   {"type": "dense", "units": 3}, {"type": "softmax"}],
              "training": {"dtype": dtype, "seed": seed % 1000}}
    try:
        model = yamlnet.build_model(config)
    except yamlnet.ShapeError:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, n_h, n_w, n_c)).astype(dtype)
    y = rng.integers(0, 3, 3)
    probabilities = model.forward(x)
    loss = model.loss_and_grad(x, y)
    ours = {"probabilities": probabilities, "loss": np.array(loss), **model.gradients()}
    exact = reference(model, x, y, torch.float64)
    # An array whose exact values are tiny next to the model's largest gradient (a saturated tanh, a
    # bias summed from terms that cancel, dead ReLUs) has no meaningful relative error of its own:
    # measure it against 1 % of that largest gradient, and never against less than 1e-3 (the loss
    # is of order 1).
    floor = max(1e-3, 1e-2 * max(np.max(np.abs(value)) for key, value in exact.items() if "/" in key))
    tolerance = 1e-8 if dtype == "float64" else 1e-4
    torch32 = reference(model, x, y, torch.float32) if dtype == "float32" else None
    for key, value in exact.items():
        error = np.max(np.abs(ours[key] - value))
        if error <= tolerance * max(np.max(np.abs(value)), floor):
            continue
        # float32 only: no further from the exact answer than PyTorch's own float32 result (a
        # gradient summed from terms that cancel loses digits in any float32 code).
        assert torch32 is not None and error <= 2 * np.max(np.abs(torch32[key] - value)), key


def reference(model, x, y, torch_dtype):
    """PyTorch's probabilities, loss and gradients for yamlnet's model and weights."""
    net = torch_twin(model).to(torch_dtype)
    logits = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(torch_dtype))
    loss = nn.functional.cross_entropy(logits, torch.from_numpy(y))
    loss.backward()
    return {"probabilities": torch.softmax(logits, 1).detach().numpy(), "loss": np.array(loss.item()),
            **torch_grads(net, model)}


def test_a_missing_reference_fails_under_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(ModuleNotFoundError):
        reference_module("no_such_reference_module")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        reference_module("no_such_reference_module")

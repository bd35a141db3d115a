"""yamlnet against an independent implementation — PyTorch, when it is installed (it is never a
dependency): random models, the same weights, outputs and every gradient compared."""

import os

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import yamlnet
from conftest import reference_module

torch = reference_module("torch")
from torch import nn  # noqa: E402
from graphs import random_models  # noqa: E402
from torch_twin import TorchGraph  # noqa: E402  (tests/torch_twin.py)


layer = st.one_of(
    st.fixed_dictionaries({"type": st.just("conv2d"), "filters": st.integers(1, 5), "size": st.integers(1, 4),
                           "stride": st.integers(1, 3), "padding": st.integers(0, 2),
                           "activation": st.sampled_from(["linear", "relu", "tanh", "sigmoid", "leaky_relu"])},
                          optional={"groups": st.sampled_from([1, 1, 2, 3]), "dilation": st.integers(1, 2)}),
    st.fixed_dictionaries({"type": st.sampled_from(["maxpool2d", "avgpool2d"]), "size": st.integers(1, 3),
                           "stride": st.integers(1, 3), "padding": st.integers(0, 1)}),
)


@settings(max_examples=int(os.environ.get("YAMLNET_EXAMPLES", 60)), deadline=None,
          derandomize=not os.environ.get("YAMLNET_RANDOM"), database=None)
@given(st.lists(layer, min_size=1, max_size=3), st.integers(5, 13), st.integers(5, 13), st.integers(1, 3),
       st.sampled_from(["float32", "float64"]), st.integers(0, 10**6))
@example([{"type": "conv2d", "filters": 4, "size": 3, "stride": 1, "padding": 1, "activation": "relu"},  # fused
          {"type": "maxpool2d", "size": 2, "stride": 2, "padding": 0},
          {"type": "conv2d", "filters": 3, "size": 2, "stride": 1, "padding": 0, "activation": "relu"}],
         13, 11, 1, "float64", 5)
@example([{"type": "conv2d", "filters": 5, "size": 2, "stride": 1, "padding": 0, "activation": "linear"},  # fused
          {"type": "maxpool2d", "size": 2, "stride": 2, "padding": 0}], 12, 9, 3, "float32", 6)
@example([{"type": "conv2d", "filters": 6, "size": 3, "stride": 2, "padding": 2, "groups": 3, "dilation": 2,
           "activation": "relu"},  # depthwise with two filters a channel, strided and dilated
          {"type": "conv2d", "filters": 4, "size": 2, "stride": 1, "padding": 1, "groups": 2, "dilation": 1}],
         13, 12, 3, "float64", 7)
@example([{"type": "conv2d", "filters": 3, "size": 3, "stride": 1, "padding": 2, "groups": 3, "dilation": 2}],
         9, 8, 3, "float32", 8)
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
    net = TorchGraph(model.layers).to(torch_dtype)
    logits = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(torch_dtype))
    loss = nn.functional.cross_entropy(logits, torch.from_numpy(y))
    loss.backward()
    return {"probabilities": torch.softmax(logits, 1).detach().numpy(), "loss": np.array(loss.item()),
            **net.grads()}


def test_a_missing_reference_fails_under_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(ModuleNotFoundError):
        reference_module("no_such_reference_module")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        reference_module("no_such_reference_module")


# -- graphs: branches, adds, concats, batchnorm, global pooling; training steps, then inference ------

def _sgd(model, net, learning_rate):
    for key, param in model.parameters().items():
        param -= learning_rate * model.gradients()[key]
    with torch.no_grad():
        for parameter in net.parameters():
            parameter -= learning_rate * parameter.grad
            parameter.grad = None


@settings(max_examples=int(os.environ.get("YAMLNET_EXAMPLES", 40)), deadline=None,
          derandomize=not os.environ.get("YAMLNET_RANDOM"), database=None)
@given(random_models(), st.sampled_from(["float32", "float64"]), st.integers(0, 10**6))
def test_graphs_agree_with_pytorch_in_training_steps_then_at_inference(config, dtype, seed):
    _agree_in_training_then_at_inference(yamlnet.build_model({**config, "training": {"dtype": dtype,
                                                                                      "seed": seed % 1000}}), seed)


@pytest.mark.parametrize("name, overrides", [
    ("resnet20", ["layers.net.with={w1: 4, w2: 8, w3: 8}", "input=[12, 12, 3]"]),
    ("mobilenet_small", ["layers.net.with={w1: 4, w2: 6, w3: 8, w4: 10}", "input=[12, 12, 3]"]),
])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_block_examples_agree_with_pytorch(name, overrides, dtype):
    """ResNet- and MobileNet-shaped files (blocks, projections, depthwise convs), small and fast."""
    model = yamlnet.build_model(name, [*overrides, f"training.dtype={dtype}", "data.dataset=shapes"])
    _agree_in_training_then_at_inference(model, 5)


def _agree_in_training_then_at_inference(model, seed):
    config, dtype = model.config, model.config["training"]["dtype"]
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    net = TorchGraph(model.layers).to(torch_dtype)
    rng = np.random.default_rng(seed)
    tolerance = 1e-8 if dtype == "float64" else 1e-4
    for step in range(3):
        x = rng.standard_normal((5, *config["input"])).astype(dtype)
        y = rng.integers(0, 3, 5)
        loss = model.loss_and_grad(x, y)
        net.train()
        torch_loss = nn.functional.cross_entropy(net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())),
                                                 torch.from_numpy(y))
        torch_loss.backward()
        assert abs(loss - torch_loss.item()) <= tolerance * max(1.0, abs(torch_loss.item())), step
        theirs = net.grads()
        scale = max(1e-3, max(np.max(np.abs(value)) for value in theirs.values()))
        for key, grad in model.gradients().items():
            assert np.max(np.abs(grad - theirs[key])) <= tolerance * scale, (step, key)
        _sgd(model, net, 0.1)
    for key, state in net.states().items():
        assert np.max(np.abs(model.states()[key] - state)) <= tolerance * max(1.0, np.max(np.abs(state))), key
    x = rng.standard_normal((4, *config["input"])).astype(dtype)
    net.eval()
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())), 1).numpy()
    assert np.max(np.abs(model.forward(x) - expected)) <= tolerance


def _rates(training, metrics=()):
    from yamlnet.optim import learning_rate_at
    records = [{"val_loss": value, "loss": value} for value in metrics]
    return [learning_rate_at(training, epoch, records[:epoch]) for epoch in range(training["epochs"])]


def _torch_rates(make, epochs, base, metrics=None):
    parameter = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=base)
    scheduler = make(optimizer)
    rates = []
    for epoch in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(*([metrics[epoch]] if metrics is not None else []))
    return rates


def _training(**schedule):
    from yamlnet.config import load_config
    epochs = schedule.pop("epochs")
    config = load_config({"input": [8, 8, 1], "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}],
                          "training": {"epochs": epochs, "learning_rate": 0.2, "lr_schedule": schedule}})
    return config["training"]


@pytest.mark.parametrize("epochs, pct_start, div_factor, final_div_factor", [
    (10, 0.3, 25.0, 1e4), (7, 0.25, 10.0, 100.0), (40, 0.5, 5.0, 1e3), (3, 0.3, 25.0, 1e4)])
def test_onecycle_gives_pytorchs_rates(epochs, pct_start, div_factor, final_div_factor):
    training = _training(type="onecycle", epochs=epochs, pct_start=pct_start, div_factor=div_factor,
                         final_div_factor=final_div_factor)
    expected = _torch_rates(lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.2, total_steps=epochs, pct_start=pct_start, div_factor=div_factor,
        final_div_factor=final_div_factor, cycle_momentum=False), epochs, 0.2)
    assert _rates(training) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("metric, patience, factor, min_lr", [
    ("val_loss", 2, 0.5, 0.0), ("val_loss", 0, 0.1, 0.003), ("val_accuracy", 1, 0.3, 0.0)])
def test_plateau_gives_pytorchs_rates(metric, patience, factor, min_lr):
    values = list(np.random.default_rng(patience).permutation([1.0, 0.9, 0.95, 0.9, 0.9, 0.91, 0.85, 0.86, 0.87,
                                                               0.88, 0.89, 0.84, 0.84, 0.9, 0.7, 0.71, 0.72, 0.73]))
    training = _training(type="plateau", epochs=len(values), metric=metric, patience=patience, factor=factor,
                         min_lr=min_lr)
    from yamlnet.optim import learning_rate_at
    records = [{metric: value} for value in values]
    ours = [learning_rate_at(training, epoch, records[:epoch]) for epoch in range(len(values))]
    expected = _torch_rates(lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min" if metric == "val_loss" else "max", factor=factor, patience=patience, min_lr=min_lr),
        len(values), 0.2, values)
    assert ours == pytest.approx(expected, rel=1e-12)
    assert len(set(ours)) > 1  # the sequence reduced at least once


@pytest.mark.parametrize("after, warmup, start", [("cosine", 3, 0.1), ("step", 2, 0.25), ("constant", 4, 0.5)])
def test_warmup_then_a_schedule_gives_pytorchs_rates(after, warmup, start):
    epochs = 12
    training = _training(type=after, epochs=epochs, warmup_epochs=warmup, warmup_start=start, step_size=3, gamma=0.5)
    following = {"cosine": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs - warmup),
                 "step": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
                 "constant": lambda opt: torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0)}[after]
    expected = _torch_rates(lambda opt: torch.optim.lr_scheduler.SequentialLR(
        opt, [torch.optim.lr_scheduler.LinearLR(opt, start_factor=start, total_iters=warmup), following(opt)],
        milestones=[warmup]), epochs, 0.2)
    assert _rates(training) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("smoothing, weighted", [(0.1, False), (0.0, True), (0.25, True)])
def test_label_smoothing_and_class_weights_give_pytorchs_loss_and_gradient(smoothing, weighted):
    from yamlnet.losses import CrossEntropy
    rng = np.random.default_rng(3)
    logits, labels = rng.standard_normal((7, 4)) * 3, rng.integers(0, 4, 7)
    weights = rng.uniform(0.2, 3, 4) if weighted else None
    loss, grad, _ = CrossEntropy(smoothing, weights)(logits, labels)
    z = torch.from_numpy(logits).requires_grad_()
    expected = nn.functional.cross_entropy(z, torch.from_numpy(labels), label_smoothing=smoothing,
                                           weight=None if weights is None else torch.from_numpy(weights))
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_a_weighted_smoothed_model_gives_pytorchs_loss_and_gradients():
    model = yamlnet.build_model({"input": [6, 6, 2], "layers": [
        {"type": "conv2d", "filters": 3, "size": 3, "activation": "relu"}, {"type": "flatten"},
        {"type": "dense", "units": 4}, {"type": "softmax"}],
        "training": {"dtype": "float64", "label_smoothing": 0.2, "seed": 1}})
    weights = np.array([0.5, 2.0, 1.0, 3.0])
    model.executor.loss.weights = weights
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((9, 6, 6, 2)), rng.integers(0, 4, 9)
    loss = model.loss_and_grad(x, y)
    net = TorchGraph(model.layers).to(torch.float64)
    logits = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    expected = nn.functional.cross_entropy(logits, torch.from_numpy(y), label_smoothing=0.2,
                                           weight=torch.from_numpy(weights))
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-10)
    for key, grad in net.grads().items():
        np.testing.assert_allclose(model.gradients()[key], grad, rtol=1e-8, atol=1e-12, err_msg=key)


def _shaken(model, rng):
    """Running statistics away from 0 and 1, so that inference differs from an identity batchnorm."""
    for layer in model.layers:
        if layer.type == "batchnorm":
            layer.state["running_mean"][...] = rng.standard_normal(layer.state["running_mean"].shape) * 0.1
            layer.state["running_var"][...] = rng.uniform(0.5, 1.5, layer.state["running_var"].shape)
    return model


@pytest.mark.parametrize("name", ["simple", "ng_example", "lenet", "resnet_small", "inception_small", "resnet20",
                                  "mobilenet_small"])
def test_activations_and_grad_cam_agree_with_pytorch_on_every_example_model(name):
    """Forward hooks' outputs, and Grad-CAM and saliency from PyTorch's autograd: ≤ 1e-5 relative in float32."""
    from yamlnet.inspection import activations, grad_cam
    overrides = ["data.dataset=shapes"] + (["layers.net.with={w1: 4, w2: 8, w3: 8}"] if name == "resnet20" else [])
    model = _shaken(yamlnet.build_model(name, overrides), np.random.default_rng(1))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, *model.config["input"])).astype(np.float32)
    ours = activations(model, x, normalized=True)
    attribution = grad_cam(model, x, normalized=True)
    net = TorchGraph(model.layers).to(torch.float32).eval()
    record = {}
    x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    logits = net(x_torch, record)
    for index, layer in enumerate(model.layers[:-1] if model.layers[-1].gives_probabilities else model.layers):
        theirs = record[index].detach().numpy()
        theirs = theirs.transpose(0, 2, 3, 1) if theirs.ndim == 4 else theirs
        scale = max(1e-3, np.max(np.abs(theirs)))
        assert np.max(np.abs(ours[layer.name] - theirs)) <= 1e-5 * scale, layer.name
    at = next(i for i, layer in enumerate(model.layers) if layer.name == attribution.layer)
    maps = record[at]
    maps.retain_grad()
    logits[torch.arange(3), torch.from_numpy(attribution.classes)].sum().backward()
    weights = maps.grad.mean(dim=(2, 3))  # α (N, K)
    expected = torch.relu(torch.einsum("nkhw,nk->nhw", maps, weights)).detach().numpy()
    scale = max(1e-6, np.max(np.abs(expected)))
    assert np.max(np.abs(attribution.maps - expected)) <= 1e-5 * scale, attribution.layer
    np.testing.assert_array_equal(attribution.classes, logits.detach().numpy().argmax(1))
    saliency = x_torch.grad.numpy().transpose(0, 2, 3, 1)
    assert np.max(np.abs(attribution.saliency - saliency)) <= 1e-5 * max(1e-6, np.max(np.abs(saliency)))

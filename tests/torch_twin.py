"""yamlnet's network as a PyTorch module: the same layers, the same wiring, and (when the layers
hold weights) the same weights. Used by the benchmark and by the PyTorch reference tests; PyTorch
is never a dependency of yamlnet itself.

Inputs are NCHW, as PyTorch takes them; yamlnet's channels-last flatten order (H, W, C) is kept
by permuting before each flatten. A final softmax is left to the loss (``cross_entropy``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from yamlnet.graph import Graph

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class TorchGraph(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers, self.graph = layers, Graph.of(layers)
        self.parts = nn.ModuleList(_module(layer) for layer in layers)

    def forward(self, x, record: dict | None = None):
        """The last layer's output (logits: a final softmax is left to the loss); with ``record``, every
        layer's output (after its activation) is kept there under its index."""
        outputs = {-1: x}
        for index, (layer, module) in enumerate(zip(self.layers, self.parts)):
            xs = [outputs[source] for source in self.graph.sources[index]]
            kind = layer.type
            if kind == "add":
                out = sum(xs[1:], xs[0])
            elif kind == "concat":
                out = torch.cat(xs, dim=1)
            elif kind == "globalavgpool2d":
                out = xs[0].mean(dim=(2, 3))
            elif kind in ("flatten", "dense") and xs[0].dim() == 4:
                out = module(xs[0].permute(0, 2, 3, 1).reshape(xs[0].shape[0], -1))
            elif kind == "softmax" and index == len(self.layers) - 1:
                out = xs[0]  # the loss applies it
            else:
                out = module(xs[0])
            if layer.activation in ACTIVATIONS:
                out = ACTIVATIONS[layer.activation]()(out)
            outputs[index] = out
            if record is not None:
                record[index] = out
            for source in self.graph.release[index]:
                if source != index:
                    outputs.pop(source, None)
        return outputs[len(self.layers) - 1]

    def grads(self) -> dict[str, np.ndarray]:
        """Gradients under yamlnet's names and layouts ("conv1/W" as (f, f, C, K))."""
        grads = {}
        for layer, module in zip(self.layers, self.parts):
            if layer.type in ("conv2d", "dense"):
                weight = module.weight.grad.numpy()
                grads[f"{layer.name}/W"] = weight.transpose(2, 3, 1, 0) if layer.type == "conv2d" else weight.T
                grads[f"{layer.name}/b"] = module.bias.grad.numpy()
            elif layer.type == "batchnorm":
                grads[f"{layer.name}/gamma"] = module.weight.grad.numpy()
                grads[f"{layer.name}/beta"] = module.bias.grad.numpy()
        return grads

    def states(self) -> dict[str, np.ndarray]:
        return {f"{layer.name}/{key}": getattr(module, key).numpy() for layer, module in zip(self.layers, self.parts)
                if layer.type == "batchnorm" for key in ("running_mean", "running_var")}


def _module(layer) -> nn.Module:
    kind, weights = layer.type, bool(layer.params)
    if kind == "conv2d":
        module = nn.Conv2d(layer.input_shape[2], layer.config["filters"], layer.f, layer.s, layer.p,
                           dilation=layer.config["dilation"], groups=layer.config["groups"])
        if weights:
            module.weight.data = torch.from_numpy(layer.params["W"].transpose(3, 2, 0, 1).copy())
            module.bias.data = torch.from_numpy(layer.params["b"].copy())
    elif kind == "dense":
        module = nn.Linear(int(np.prod(layer.input_shape)), layer.config["units"])
        if weights:
            module.weight.data = torch.from_numpy(layer.params["W"].T.copy())
            module.bias.data = torch.from_numpy(layer.params["b"].copy())
    elif kind == "batchnorm":
        norm = nn.BatchNorm2d if len(layer.input_shape) == 3 else nn.BatchNorm1d
        module = norm(layer.input_shape[-1], eps=layer.config["eps"], momentum=layer.config["momentum"])
        if weights:
            module.weight.data = torch.from_numpy(layer.params["gamma"].copy())
            module.bias.data = torch.from_numpy(layer.params["beta"].copy())
            module.running_mean.data = torch.from_numpy(layer.state["running_mean"].copy())
            module.running_var.data = torch.from_numpy(layer.state["running_var"].copy())
    elif kind in ("maxpool2d", "avgpool2d"):
        module = (nn.MaxPool2d if kind == "maxpool2d" else nn.AvgPool2d)(layer.f, layer.s, layer.p)
    elif kind == "dropout":
        module = nn.Dropout(layer.config["rate"])
    elif kind == "softmax":
        module = nn.Softmax(dim=1)
    else:  # flatten (done in forward), activation (applied after every layer), joins, global pooling
        module = nn.Identity()
    return module

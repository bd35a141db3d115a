"""The layer contract and the registry: the one map from a ``type:`` in a model file to a class.

Every layer follows CS231n's forward/backward pairing:

- ``compute_output_shape(input_shape)`` — shapes only, before any data or weights exist;
  raises ``ShapeError`` with ``key`` set to the hyperparameter at fault.
- ``build(input_shape, rng, dtype, init)`` — allocates ``params`` (and zeroed ``grads``).
- ``forward(x, training)`` — computes the output and caches what ``backward`` needs.
- ``backward(grad)`` — fills ``grads`` (same keys as ``params``) and returns d loss / d input.

Shapes are channels-last, as the course notes write them: a volume is ``(n_H, n_W, n_C)``
and a batch ``(N, n_H, n_W, n_C)``; a vector is ``(n,)`` and a batch of them ``(N, n)``.

A layer reads the outputs named in ``inputs`` (default: the layer before). A join layer
(``joins = True``: add, concat) takes a list of input shapes and arrays and returns a list of
gradients; every other layer takes exactly one. ``state`` holds arrays that are saved with the
weights but not trained (batch normalization's running statistics).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from yamlnet.errors import ShapeError

Shape = tuple[int, ...]

LAYERS: dict[str, type["Layer"]] = {}


def register(type_name: str):
    """Class decorator: make ``type_name`` usable as ``type:`` in a model file."""

    def decorate(cls: type[Layer]) -> type[Layer]:
        if type_name in LAYERS:
            raise ValueError(f"layer type {type_name!r} is registered twice")
        cls.type = type_name
        LAYERS[type_name] = cls
        return cls

    return decorate


class Layer:
    """Base class. Subclasses set ``hyperparameters`` (JSON Schema properties of their keys)."""

    type: ClassVar[str]
    description: ClassVar[str] = ""
    hyperparameters: ClassVar[dict[str, dict]] = {}
    required: ClassVar[tuple[str, ...]] = ()
    #: whether ``backward`` must compute d loss / d input; the model turns it off for layers
    #: with nothing trainable before them (the first conv needs no input gradient).
    needs_input_grad: bool = True
    #: whether the input must be a volume (n_H, n_W, n_C); checked before ``compute_output_shape``
    needs_volume: ClassVar[bool] = False
    #: a join reads two or more inputs: shapes, arrays and gradients come as lists, in ``inputs`` order
    joins: ClassVar[bool] = False
    #: whether a training batch must be normalized as a whole (batchnorm): the shards of a cut batch
    #: then add up their sums through a reducer, the largest of which has ``reduction_size`` values
    needs_whole_batch: ClassVar[bool] = False
    reduction_size: int = 0
    #: whether a training forward draws random numbers (dropout): the model draws them for the whole
    #: batch (``draw_noise``) when it cuts the batch, so that a run draws the same however it is cut
    draws_noise: bool = False

    # -- what the rest of yamlnet asks of a type (never a table of type names elsewhere) ---------
    #: what other frameworks call this type: a file that writes one is asked "did you mean …?"
    other_names: ClassVar[tuple[str, ...]] = ()
    #: drawn inside the box of the one layer it reads, as the lecture draws batchnorm, an activation
    #: or dropout; False: a box of its own
    drawn_inside: ClassVar[bool] = False
    #: its type is named in a drawing's box (conv2d and dense go without: their figures say it)
    drawn_with_type: ClassVar[bool] = True
    #: initialization looks through it for the ReLU that may follow (He, not Glorot, before one)
    transparent_to_init: ClassVar[bool] = False
    #: its outputs are class probabilities (the final softmax, which training fuses with the loss)
    gives_probabilities: ClassVar[bool] = False
    #: a linear map (conv2d, dense): a batchnorm that alone reads it folds into it at inference
    takes_folded_batchnorm: ClassVar[bool] = False
    #: folds into a ``takes_folded_batchnorm`` layer it alone reads, at inference (``scale_and_shift``)
    folds_into_linear: ClassVar[bool] = False
    #: element-wise: it can run in place (``in_place``) on an output that is its alone (``hands_over_output``)
    runs_in_place: ClassVar[bool] = False
    #: set on the copy ``in_place`` makes, which applies itself to its input array
    overwrites_input: bool = False
    #: forward returns an array made afresh at every call, its ``activation`` applied last, and backward
    #: reads that array back only for g′ (conv2d, dense, batchnorm, add)
    fresh_output: ClassVar[bool] = False

    def __init__(self, name: str, config: dict[str, Any]):
        self.name = name
        self.config = config  # this layer's resolved keys from the file, defaults filled
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray] = {}  # saved, not trained
        self.inputs: list[str] = []  # names of what it reads ("input": the model's input); set by the model
        self.input_shape: Shape | list[Shape] | None = None  # a join: one shape per input
        self.output_shape: Shape | None = None

    @classmethod
    def complete(cls, config: dict[str, Any]) -> None:
        """Fill defaults that depend on other keys (a pool's stride defaults to its size)."""

    # -- shapes, before any data exists -------------------------------------------------
    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def set_input_shape(self, input_shape: Shape | list[Shape]) -> Shape:
        if self.joins:
            self.input_shape = [tuple(shape) for shape in input_shape]
            self.output_shape = tuple(self.compute_output_shape(self.input_shape))
            return self.output_shape
        if self.needs_volume and len(input_shape) != 3:
            raise ShapeError(f"{self.type} needs a volume n_H × n_W × n_C as input, got a vector of "
                             f"{input_shape[0]} (after flatten or dense)", key="type")
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(self.compute_output_shape(self.input_shape))
        return self.output_shape

    def param_shapes(self) -> dict[str, Shape]:
        """Shape of every parameter array, from ``input_shape`` alone."""
        return {}

    def param_count(self) -> int:
        return sum(int(np.prod(shape)) for shape in self.param_shapes().values())

    def macs(self) -> int:
        """Multiply-adds of one forward pass for one sample (Keras / torchinfo counting)."""
        return 0

    def explain(self) -> list[str]:
        """The course notes' arithmetic for this layer with its numbers filled in."""
        return []

    def hyperparameter_text(self) -> str:
        """f / s / p (or similar) for the summary table."""
        return ""

    def drops_pixels(self) -> bool:
        """True when floor() in the size formula leaves input rows or columns unused."""
        return False

    @property
    def activation(self) -> str:
        return self.config.get("activation", "")

    def kept_output(self, a):
        """What backward keeps of this layer's output ``a`` for g′: nothing without an activation, so
        that an output read by one layer alone is freed once that one no longer needs it (a batchnorm's
        or a projection's before an add: a third less memory in the batchnorm graph's forward)."""
        return None if self.activation in ("", "linear") else a

    @property
    def hands_over_output(self) -> bool:
        """Whether the only reader of this layer's output may overwrite it: a ``fresh_output`` type
        without an activation (its backward reads its output back only for g′)."""
        return self.fresh_output and self.activation == "linear"

    def label(self) -> str:
        """Its name, hyperparameters and activation, as a drawing writes them (``conv1 f=3 s=1 p=1 + relu``)."""
        text = self.name + (f" {self.hyperparameter_text()}" if self.hyperparameter_text() else "")
        return text + (f" + {self.activation}" if self.activation not in ("", "linear") else "")

    def drawn_after(self, chain: bool) -> str:
        """A ``drawn_inside`` layer's words on the arrow (a chain) or in the box (a graph) it joins."""
        return f" → {self.label()}" if chain else f"\n+ {self.name}"

    def scratch_bytes(self, batch: int, itemsize: int) -> int:
        """Training memory of its own beyond its weights, output and gradients (a conv's im2col columns)."""
        return 0

    def onnx(self, graph, inputs: list[str], input_shape) -> str:
        """Add its ONNX nodes (before its activation, which the exporter adds) to ``graph``
        (``yamlnet.export.OnnxGraph``: ``node``, ``constant``, ``flat``), reading ``inputs`` (ONNX names,
        volumes NCHW) of shape ``input_shape`` (the first input's, channels last); returns its output's name."""
        raise NotImplementedError

    # -- weights and math ---------------------------------------------------------------
    def build(self, input_shape: Shape, rng: np.random.Generator, dtype=np.float32, init: str = "glorot"):
        self.set_input_shape(input_shape)
        self.dtype = np.dtype(dtype)
        self.params = {key: self.initial_value(key, shape, rng, init)
                       for key, shape in self.param_shapes().items()}
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self.state = {key: np.full(shape, fill, dtype=self.dtype) for key, (shape, fill) in self.state_shapes().items()}

    def state_shapes(self) -> dict[str, tuple[Shape, float]]:
        """Shape and starting value of every ``state`` array (saved, not trained)."""
        return {}

    def replica(self) -> "Layer":
        """A twin for another shard of the batch (``yamlnet.parallel``): it shares this layer's
        ``params`` (the same dict, so updates reach both) but has its own ``grads``, caches and buffers."""
        twin = type(self)(self.name, self.config)
        twin.inputs = self.inputs
        twin.set_input_shape(self.input_shape)
        twin.dtype = self.dtype
        twin.params, twin.state = self.params, self.state
        twin.grads = {key: np.zeros_like(value) for key, value in self.grads.items()}
        twin.needs_input_grad = self.needs_input_grad
        return twin

    def initial_value(self, key: str, shape: Shape, rng: np.random.Generator, init: str) -> np.ndarray:
        """Biases start at zero; weights He-normal before ReLU-like units, else Glorot-uniform."""
        if key == "b":
            return np.zeros(shape, dtype=self.dtype)
        fan_in, fan_out = self.fans()
        if init == "he":
            values = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        else:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            values = rng.uniform(-limit, limit, shape)
        return values.astype(self.dtype)

    def fans(self) -> tuple[int, int]:
        raise NotImplementedError

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def forward_traced(self, x: np.ndarray) -> np.ndarray:
        """The inference output of x, keeping what ``backward`` needs: for gradients of a trained model's
        outputs (``yamlnet.inspection``: Grad-CAM, saliency). The training forward wherever it computes what
        inference does; a layer that differs in training (batchnorm, dropout) answers otherwise."""
        return self.forward(x, training=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, output_shape={self.output_shape})"


class WindowedLayer(Layer):
    """A layer that slides an f × f window at stride s over an input padded by p: conv and pool."""

    needs_volume = True

    @property
    def f(self) -> int:
        return self.config["size"]

    @property
    def s(self) -> int:
        return self.config["stride"]

    @property
    def extent(self) -> int:
        """How many pixels a window spans: f, or d·(f − 1) + 1 with its taps d apart (a dilated conv)."""
        return self.f

    @property
    def p(self) -> int:
        try:
            return resolve_padding(self.config["padding"], self.extent, self.s)
        except ShapeError:
            if self.extent == self.f:
                raise
            raise ShapeError(f"'same' padding needs stride 1 and a window that spans an odd number of pixels; "
                             f"size {self.f} spans {self.extent} at this dilation, and the stride is {self.s}",
                             key="padding") from None

    def hyperparameter_text(self) -> str:
        return f"f={self.f} s={self.s} p={self.p}"

    def drops_pixels(self) -> bool:
        return any((n + 2 * self.p - self.extent) % self.s for n in self.input_shape[:2])

    def _window_formula(self, n_in: int) -> str:
        span = f"{self.f}" if self.extent == self.f else f"{self.d}·({self.f} − 1) − 1"
        return f"floor(({n_in} + 2·{self.p} − {span}) / {self.s}) + 1"

    def explain(self) -> list[str]:
        (n_h, n_w, _), (o_h, o_w, _) = self.input_shape, self.output_shape
        if n_h == n_w:
            return [f"n_H = n_W = {self._window_formula(n_h)} = {o_h}"]
        return [f"n_H = {self._window_formula(n_h)} = {o_h}", f"n_W = {self._window_formula(n_w)} = {o_w}"]

    def windowed_shape(self, input_shape: Shape, n_out_channels: int) -> Shape:
        """Output volume (n_H, n_W, n_out_channels), checking that it is at least 1 × 1."""
        n_h, n_w, _ = input_shape
        sizes = []
        for axis, n_in in (("n_H", n_h), ("n_W", n_w)):
            n_out = window_output(n_in, self.extent, self.s, self.p)
            if n_out < 1:
                raise ShapeError(f"output would be smaller than 1: {axis} = {self._window_formula(n_in)} = {n_out}; "
                                 "use a smaller size, more padding or a larger input", key="size")
            sizes.append(n_out)
        return (sizes[0], sizes[1], n_out_channels)


def shape_text(shape: Shape) -> str:
    """(37, 37, 10) → ``37 × 37 × 10``."""
    return " × ".join(str(n) for n in shape)


def window_output(n_in: int, f: int, s: int, p: int) -> int:
    """The course notes' formula: n_out = floor((n_in + 2p − f) / s) + 1 (f: the window's extent)."""
    return (n_in + 2 * p - f) // s + 1


def resolve_padding(padding: int | str, f: int, s: int) -> int:
    """``valid`` is 0; ``same`` keeps the size, so it needs stride 1 and an odd f."""
    if padding == "valid":
        return 0
    if padding == "same":
        if s != 1 or f % 2 == 0:
            raise ShapeError(f"'same' padding needs stride 1 and an odd size, got size {f} and stride {s}",
                             key="padding")
        return (f - 1) // 2
    return int(padding)


INT_AT_LEAST_1 = {"type": "integer", "minimum": 1}
PADDING = {
    "anyOf": [{"type": "integer", "minimum": 0}, {"enum": ["valid", "same"]}],
    "default": 0,
    "x-expected": "a whole number ≥ 0, 'valid' or 'same'",
}

"""Seeing inside a trained network: every layer's output for an image, Grad-CAM and saliency.

- ``activations``: each layer's output in inference mode, as the layer computes it (the layers as the
  file has them: no fused pairs, no folded batchnorms), batch first, channels last.
- ``grad_cam`` (Selvaraju et al., 2017): at a layer with a volume output A (N, h, w, K), the gradient of
  a class's score — its logit, the input of softmax — with respect to A, averaged over each map, weighs
  the maps: ReLU(Σ_k α_k A_k), (N, h, w) at that layer's resolution.
- ``saliency``: the gradient of the predicted class's logit with respect to the normalized input.

Gradients run through ``Layer.forward_traced`` (inference arithmetic, with what backward needs) and the
one backward path (``yamlnet.graph.run_backward``). They use the layers' gradient buffers: the
functions are for a trained model at rest, not one in the middle of a training step.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from yamlnet.errors import ConfigError
from yamlnet.graph import INPUT, run_backward
from yamlnet.layers.base import shape_text
from yamlnet.layers.softmax import softmax


def trained_model(source):
    """A ``Model`` as it is, or the trained model of a run directory or a model .npz."""
    from yamlnet.model import Model
    if isinstance(source, Model):
        return source
    from yamlnet.evaluate import load_trained
    return load_trained(source)


def _inputs(model, images, normalized: bool) -> np.ndarray:
    return model._check_input(images) if normalized else model.normalize(images)


def activations(source, images: np.ndarray, layers: list[str] | None = None, *,
                normalized: bool = False) -> dict[str, np.ndarray]:
    """Layer name → its output for ``images`` (N, n_H, n_W, n_C) — raw, as the data set has them, unless
    ``normalized`` — in inference mode: (N, h, w, c) for a volume, (N, units) for a vector. ``layers``:
    these only (default: every layer)."""
    model = trained_model(source)
    wanted = _layer_names(model, layers)
    outputs: dict[int, np.ndarray] = {INPUT: _inputs(model, images, normalized)}
    found = {}
    for index, layer in enumerate(model.layers):
        arrays = [outputs[source] for source in model.graph.sources[index]]
        outputs[index] = layer.forward(arrays if layer.joins else arrays[0], training=False)
        if layer.name in wanted:
            found[layer.name] = outputs[index]
    return found


@dataclass
class Attribution:
    """Grad-CAM and saliency for a batch: ``maps`` (N, h, w) at ``layer``'s resolution, for ``classes``
    (N,) class indices; ``saliency`` (N, n_H, n_W, n_C); ``logits`` (N, n_classes)."""

    layer: str
    classes: np.ndarray
    maps: np.ndarray
    saliency: np.ndarray
    logits: np.ndarray


def grad_cam(source, images: np.ndarray, class_name: str | None = None, layer: str | None = None, *,
             normalized: bool = False) -> Attribution:
    """Grad-CAM of ``images`` for the class ``class_name`` (default: each image's predicted class) at
    ``layer`` (default: the last layer whose output is a volume), and the saliency of the same class
    scores with respect to the normalized input."""
    model = trained_model(source)
    x = _inputs(model, images, normalized)
    at = _cam_layer(model, layer)
    with _traced(model):
        outputs: dict[int, np.ndarray] = {INPUT: x}
        for index, part in enumerate(model.layers[:model.logits_at + 1]):
            arrays = [outputs[source] for source in model.graph.sources[index]]
            outputs[index] = part.forward_traced(arrays if part.joins else arrays[0])
        logits = outputs[model.logits_at]
        classes = np.full(len(x), _class_index(model, class_name)) if class_name is not None else logits.argmax(1)
        score_grad = np.zeros_like(logits)
        score_grad[np.arange(len(x)), classes] = 1
        kept = run_backward(model.layers, model.graph, score_grad, model.logits_at, keep={at, INPUT})
    maps, grads = outputs[at], kept.get(at, np.zeros_like(outputs[at]))
    weights = grads.mean(axis=(1, 2))  # α (N, K): each map's mean gradient
    cam = np.maximum(np.einsum("nhwk,nk->nhw", maps, weights), 0)
    return Attribution(model.layers[at].name, classes, cam, kept.get(INPUT, np.zeros_like(x)), logits)


@contextmanager
def _traced(model):
    """Every layer computes its input gradient (saliency needs the first one's too), as it was after."""
    saved = [layer.needs_input_grad for layer in model.layers]
    for layer in model.layers:
        layer.needs_input_grad = True
    try:
        yield
    finally:
        for layer, value in zip(model.layers, saved):
            layer.needs_input_grad = value


def _layer_names(model, layers) -> list[str]:
    names = [layer.name for layer in model.layers]
    for name in layers or ():
        if name not in names:
            from yamlnet.config.schema import suggest
            raise ConfigError(f"--layers: no layer named {name}{suggest(name, names)}; layers are {', '.join(names)}")
    return list(layers) if layers else names


def _cam_layer(model, name: str | None) -> int:
    """The index of the layer Grad-CAM looks at: ``name``, or the last with a volume output before the logits."""
    volumes = [index for index, layer in enumerate(model.layers[:model.logits_at + 1])
               if len(layer.output_shape) == 3]
    if name is None:
        if not volumes:
            raise ConfigError("Grad-CAM needs a layer with a volume output (n_H × n_W × n_C); this model has none")
        return volumes[-1]
    index = next((i for i, layer in enumerate(model.layers) if layer.name == name), None)
    if index is None or index not in volumes:
        choices = ", ".join(model.layers[i].name for i in volumes)
        raise ConfigError(f"--layer: {name} is {'no layer' if index is None else 'not a volume'}; Grad-CAM looks at "
                          f"a layer with a volume output before the logits: {choices}")
    return index


def _class_index(model, name: str) -> int:
    classes = list(model.classes)
    if name not in classes:
        from yamlnet.config.schema import suggest
        raise ConfigError(f"--class: {name!r} is not a class of the model{suggest(name, classes)}; "
                          f"classes: {', '.join(classes)}")
    return classes.index(name)


def describe(layer) -> str:
    """``conv2: 17 × 17 × 20 (conv2d)``: how a layer's pictures are titled."""
    return f"{layer.name}: {shape_text(layer.output_shape)} ({layer.type})"


# -- yamlnet inspect: the arrays and their pictures -------------------------------------------------

#: channels drawn on one layer's page at most (the rest are named as left out)
MAX_CHANNELS = 256


@dataclass
class Inspection:
    """What ``inspect`` computed for a batch of images, and where it wrote it."""

    files: list
    probabilities: np.ndarray
    activations: dict[str, np.ndarray]
    cams: dict[str, Attribution]  # class name → Grad-CAM (and saliency) for that class
    predicted: Attribution  # each image's own predicted class
    names: list[str]  # the class names
    out: object = None
    npz: object = None

    def lines(self) -> list[str]:
        """What ``yamlnet inspect`` prints: each image's three likeliest classes, then where things went."""
        lines = []
        for k, file in enumerate(self.files):
            top = np.argsort(self.probabilities[k])[::-1][:3]
            lines.append(f"{file}: " + ", ".join(f"{self.names[i]} {self.probabilities[k][i]:.3f}" for i in top))
        where = [f"Grad-CAM at {self.predicted.layer}"] + ([f"pictures: {self.out}"] if self.out else []) + \
            ([f"arrays: {self.npz}"] if self.npz else [])
        return lines + ["; ".join(where)]


def inspect(source, inputs=(), *, index: int | None = None, layers: list[str] | None = None,
            class_name: str | None = None, layer: str | None = None, out=None, npz=None,
            pictures: bool = True) -> Inspection:
    """Every layer's output, Grad-CAM (the predicted class's, and ``class_name``'s) and saliency for the
    images of ``inputs`` (as ``predict`` takes them) or image ``index`` of the run's validation part; the
    pictures under ``out`` (default: the run directory's ``inspect/``), the arrays in ``npz`` if given."""
    from pathlib import Path

    from yamlnet.evaluate import gather_images
    from yamlnet.npzio import write_npz_atomic

    model = trained_model(source)
    if index is not None:
        files, raw = _validation_image(model, source, index)
    else:
        if not inputs:
            raise ConfigError("inspect needs images (files, folders, .npz files) or --index N")
        files, raw = gather_images(model, list(inputs))
    if class_name is not None:
        _class_index(model, class_name)  # (refused before any work)
    x = model.normalize(raw)
    found = activations(model, x, layers, normalized=True)
    predicted = grad_cam(model, x, layer=layer, normalized=True)
    names = list(model.classes)
    wanted = sorted({names[k] for k in predicted.classes} | ({class_name} if class_name else set()), key=names.index)
    # each class's for every image; where every image predicts that class, it is the predicted one already
    cams = {name: predicted if np.all(predicted.classes == names.index(name)) else
            grad_cam(model, x, name, layer, normalized=True) for name in wanted}
    probabilities = softmax(predicted.logits)  # (the logits are the traced forward's: no pass more)
    result = Inspection(files, probabilities, found, cams, predicted, names)
    if npz is not None:
        arrays = {f"activations/{name}": value for name, value in found.items()}
        arrays |= {f"grad_cam/{name}": cam.maps for name, cam in cams.items()}
        arrays |= {"saliency": predicted.saliency, "predicted": predicted.classes, "classes": np.array(names),
                   "files": np.array([str(name) for name in files])}
        write_npz_atomic(Path(npz), arrays)
        result.npz = Path(npz)
    if pictures:
        result.out = Path(out) if out is not None else (Path(source) / "inspect" if Path(str(source)).is_dir()
                                                        else Path("inspect"))
        draw_inspection(model, raw, result, names, class_name)
    return result


def _validation_image(model, source, index: int):
    from yamlnet.data import load_data

    splits = load_data(model.config, model.output_shape[0], dtype=model.dtype)
    if not 0 <= index < len(splits.val):
        raise ConfigError(f"--index {index}: the run's validation part has {len(splits.val)} images (0..{len(splits.val) - 1})")
    row = splits.val[index]
    return [f"validation[{index}]"], splits.x[[row]] * splits.scale + splits.shift


def draw_inspection(model, raw: np.ndarray, result: Inspection, names: list[str], class_name: str | None) -> None:
    """For each image a folder: ``overview.png`` (the image, its top classes, Grad-CAM and saliency) and
    one picture per layer; and ``filters/<conv>.png`` for every conv layer, once."""
    result.out.mkdir(parents=True, exist_ok=True)
    by_name = {layer.name: layer for layer in model.layers}
    for name, layer in by_name.items():
        if layer.type == "conv2d" and "W" in layer.params:
            _draw_filters(layer, result.out / "filters" / f"{name}.png")
    for k, file in enumerate(result.files):
        folder = result.out / _folder_name(file, k)
        folder.mkdir(parents=True, exist_ok=True)
        _draw_overview(raw[k], result, k, names, class_name, folder / "overview.png")
        for name, values in result.activations.items():
            _draw_layer(by_name[name], values[k], folder / f"{name}.png")


def _folder_name(file, k: int) -> str:
    from pathlib import Path
    stem = Path(str(file)).stem if not isinstance(file, int) else f"image{file}"
    return f"{k:03d}-{''.join(c if c.isalnum() or c in '-_.' else '_' for c in stem)}"


def _scaled(image: np.ndarray) -> np.ndarray:
    """An image (H, W, C) to 0..1 for display: grey as (H, W), colour as (H, W, 3)."""
    low, high = float(image.min()), float(image.max())
    shown = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return shown[..., 0] if shown.shape[-1] == 1 else shown


def _draw_overview(image, result: Inspection, k: int, names, class_name, path) -> None:
    from yamlnet.figures import pyplot, save

    plt = pyplot()
    cams = [result.cams[names[result.predicted.classes[k]]]] + \
        ([result.cams[class_name]] if class_name and class_name != names[result.predicted.classes[k]] else [])
    figure, axes = plt.subplots(1, 3 + len(cams), figsize=(3.2 * (3 + len(cams)), 3.2))
    axes[0].imshow(_scaled(image), cmap="gray")
    axes[0].set_title(str(result.files[k])[-30:], fontsize=8)
    top = np.argsort(result.probabilities[k])[::-1][:5]
    axes[1].barh(range(len(top))[::-1], result.probabilities[k][top], color="#4a7ebb")
    axes[1].set_yticks(range(len(top))[::-1], [names[i] for i in top], fontsize=8)
    axes[1].set_xlim(0, 1)
    axes[1].set_title("top classes", fontsize=9)
    for axis, cam in zip(axes[2:], cams):
        axis.imshow(_scaled(image), cmap="gray")
        h, w = image.shape[:2]
        axis.imshow(cam.maps[k], cmap="jet", alpha=0.45, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
                    interpolation="bilinear")
        axis.set_title(f"Grad-CAM: {names[cam.classes[k]]} at {cam.layer}", fontsize=8)
    saliency = np.abs(result.predicted.saliency[k]).max(axis=-1)
    axes[-1].imshow(saliency, cmap="magma")
    axes[-1].set_title("saliency |d logit / d input|", fontsize=8)
    for axis in (axes[0], *axes[2:]):
        axis.set_xticks([])
        axis.set_yticks([])
    save(figure, path, dpi=90)


def _draw_layer(layer, values: np.ndarray, path) -> None:
    """A volume as a grid of its channels, each scaled from its own lowest to highest value; a vector as bars."""
    from yamlnet.figures import pyplot, save

    plt = pyplot()
    if values.ndim == 1:
        figure, axis = plt.subplots(figsize=(min(12, 2 + 0.12 * len(values)), 2.6))
        axis.bar(range(len(values)), values, color="#4a7ebb")
        axis.set_title(describe(layer), fontsize=9)
        save(figure, path, dpi=90)
        return
    channels = min(values.shape[-1], MAX_CHANNELS)
    columns = int(np.ceil(np.sqrt(channels)))
    rows = int(np.ceil(channels / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.1 * columns + 0.8, 1.1 * rows + 0.6), squeeze=False)
    low, high = values.min(axis=(0, 1)), values.max(axis=(0, 1))
    scaled = (values - low) / np.where(high > low, high - low, 1)
    for c, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if c < channels:
            shown = axis.imshow(scaled[..., c], cmap="viridis", vmin=0, vmax=1)
        else:
            axis.axis("off")
    title = describe(layer) + (f" — the first {channels} of {values.shape[-1]} channels" if channels < values.shape[-1]
                               else "")
    figure.suptitle(title, fontsize=9)
    figure.colorbar(shown, ax=axes, shrink=0.6, label="each channel: its lowest (0) to highest (1)")
    save(figure, path, dpi=80, tight=False)


def _draw_filters(layer, path) -> None:
    """A conv layer's filters: in colour where they read 3 channels, else one row per filter and a
    column per input channel (as many as fit)."""
    from yamlnet.figures import pyplot, save

    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = layer.params["W"]  # (f, f, C_in / groups, K)
    k = min(weights.shape[3], 64)
    colour = weights.shape[2] == 3
    per_filter = 1 if colour else min(weights.shape[2], 8)
    columns = 8 if colour or per_filter == 1 else per_filter
    rows = int(np.ceil(k / columns)) if colour or per_filter == 1 else k
    figure, axes = plt.subplots(rows, columns, figsize=(0.9 * columns + 0.6, 0.9 * rows + 0.6), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for i in range(k):
        if colour or per_filter == 1:
            axis = axes.flat[i]
            kernel = weights[..., i]
            axis.imshow(_scaled(kernel) if colour else kernel[..., 0], cmap="gray")
        else:
            for c in range(per_filter):
                axes[i, c].imshow(weights[:, :, c, i], cmap="gray")
    figure.suptitle(f"{layer.name}: {weights.shape[3]} filters of {weights.shape[0]} × {weights.shape[1]} × "
                    f"{weights.shape[2]}" + (f" (the first {k})" if k < weights.shape[3] else ""), fontsize=9)
    save(figure, path, dpi=80)

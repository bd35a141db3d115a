"""folder: your own images, one sub-folder per class (as torchvision's ImageFolder reads them).

Class k is the k-th sub-folder's name, sorted. Images are read with Pillow — PNG, JPEG, BMP, GIF
(first frame), TIFF; other files are skipped — converted to the model's n_C (1: grey, 3: RGB) and
resized to its n_H × n_W where they differ (``data.resize``). Pixel values are 0..255.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yamlnet.data.registry import PATH_KEY, register_dataset
from yamlnet.errors import DataError, YamlnetWarning

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}
_MODES = {1: "L", 3: "RGB"}


def image_files(folder: Path) -> list[Path]:
    """Every image below ``folder`` (recursively), by suffix, sorted; other files are skipped."""
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def class_folders(folder: Path, what: str = "data.path") -> list[Path]:
    """The class sub-folders of ``folder``, sorted by name; a clear error for a folder that is not one."""
    if not folder.exists():
        raise DataError(f"no such folder ({what} names a folder with one sub-folder per class)", file=str(folder))
    if not folder.is_dir():
        raise DataError(f"is a file, not a folder ({what} names a folder with one sub-folder per class)",
                        file=str(folder))
    classes = sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not classes:
        raise DataError("holds no class folders: put each class's images in a sub-folder named after the class",
                        file=str(folder))
    return classes


@dataclass(frozen=True)
class Resize:
    """How an image of another size is brought to the model's n_H × n_W: ``stretch`` (to that size,
    whatever its shape), ``fit`` (the whole image kept, its aspect ratio too, centred on black: a
    letterbox), ``crop`` (the aspect ratio kept, filling the size, the middle cut out) or ``none``
    (refused); with Pillow's ``bilinear`` or ``nearest`` resampling."""

    mode: str = "stretch"
    resample: str = "bilinear"

    @classmethod
    def of(cls, data: dict) -> "Resize":
        """From ``data.resize`` and ``data.resample`` (``resize: bilinear`` or ``nearest``, as files wrote
        it before ``fit`` and ``crop``, is ``stretch`` with that resampling)."""
        mode = data.get("resize", "stretch")
        if mode in ("bilinear", "nearest"):
            return cls("stretch", mode)
        return cls(mode, data.get("resample", "bilinear"))

    def __call__(self, image, n_w: int, n_h: int, path: Path):
        from PIL import Image

        width, height = image.size
        if (width, height) == (n_w, n_h):
            return image
        if self.mode == "none":
            raise DataError(f"is {width} × {height} (width × height) but the model takes {n_w} × {n_h}; "
                            f"data.resize is none", file=str(path))
        method = Image.Resampling.NEAREST if self.resample == "nearest" else Image.Resampling.BILINEAR
        if self.mode == "stretch":
            return image.resize((n_w, n_h), method)
        ratio = (min if self.mode == "fit" else max)(n_w / width, n_h / height)
        size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
        image = image.resize(size, method)
        if self.mode == "crop":
            left, top = (size[0] - n_w) // 2, (size[1] - n_h) // 2
            return image.crop((left, top, left + n_w, top + n_h))
        canvas = Image.new(image.mode, (n_w, n_h), 0)
        canvas.paste(image, ((n_w - size[0]) // 2, (n_h - size[1]) // 2))
        return canvas


def read_image(path: Path, input_shape: tuple[int, int, int], resize: Resize = Resize()) -> np.ndarray:
    """One image as float32 (n_H, n_W, n_C), 0..255: converted to n_C channels and resized as the model takes it."""
    from PIL import Image, UnidentifiedImageError

    n_h, n_w, n_c = input_shape
    if n_c not in _MODES:
        raise DataError(f"images have 1 (grey) or 3 (RGB) channels; the model's input has {n_c}", key="input")
    try:
        with Image.open(path) as image:
            image.seek(0)  # a GIF's first frame
            image = image.convert("RGBA").convert(_MODES[n_c]) if image.mode in ("P", "PA", "LA") else \
                image.convert(_MODES[n_c])
            pixels = np.asarray(resize(image, n_w, n_h, path), dtype=np.float32)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"cannot be read as an image ({type(exc).__name__}: {exc})", file=str(path)) from None
    return pixels.reshape(n_h, n_w, n_c)


class UnreadableImage(DataError):
    """A file that Pillow cannot decode (truncated, damaged, not an image): what ``data.skip_bad`` skips."""


class DataWarning(YamlnetWarning):
    """Something in the data was passed over (``data.skip_bad``): the message says what."""


def skipped(files: list[Path], where: str) -> None:
    """One warning line for the unreadable images that ``data.skip_bad`` passed over, if any."""
    if files:
        import warnings
        shown = ", ".join(map(str, files[:3])) + (", …" if len(files) > 3 else "")
        warnings.warn(DataWarning(f"{where}: skipped {len(files)} unreadable image{'s' * (len(files) > 1)} "
                                  f"(data.skip_bad): {shown}"), stacklevel=2)


def read_folder(folder: Path, input_shape, resize: Resize, classes: list[str] | None = None, what: str = "data.path",
                skip_bad: bool = False):
    """(x (N, n_H, n_W, n_C) float32, y (N,), class names) of a folder of class folders. With
    ``classes`` (the training folder's), a class folder not among them is an error. An image that
    cannot be read is an error naming it, or with ``skip_bad`` left out (one warning line in all)."""
    from yamlnet.progress import track

    folders = class_folders(Path(folder), what)
    names = [path.name for path in folders]
    if classes is not None:
        unknown = [name for name in names if name not in classes]
        if unknown:
            raise DataError(f"has class folder {unknown[0]!r}, which the training folder lacks "
                            f"(it has {', '.join(classes)})", file=str(folder))
    files, labels = [], []
    for name, path in zip(names, folders):
        found = image_files(path)
        if not found:
            raise DataError(f"class folder {name!r} holds no images (PNG, JPEG, BMP, GIF, TIFF)", file=str(path))
        files += found
        labels += [(classes or names).index(name)] * len(found)
    x = np.empty((len(files), *input_shape), dtype=np.float32)
    good, bad = [], []
    for index, path in enumerate(track(files, f"reading {folder}")):
        try:
            x[index] = read_image(path, input_shape, resize)
            good.append(index)
        except UnreadableImage as error:
            if not skip_bad:
                raise DataError(f"{error.message}; data.skip_bad: true skips unreadable images", file=error.file) \
                    from None
            bad.append(path)
    skipped(bad, str(folder))
    if bad:
        x, labels = x[good], [labels[index] for index in good]
    return x, np.array(labels, dtype=np.int64), names


def count_images(data: dict) -> int:
    """How many images the folder data set holds (for the memory estimate), 0 where a folder is missing."""
    total = 0
    for key in ("path", "test_path"):
        folder = Path(data.get(key) or "")
        if data.get(key) and folder.is_dir():
            total += sum(len(image_files(path)) for path in folder.iterdir() if path.is_dir())
    return total


@register_dataset("folder", required=("path",), description="your own images: a folder with one sub-folder "
                  "per class (PNG, JPEG, BMP, GIF, TIFF)", keys={
    "path": PATH_KEY,
    "test_path": {"type": "string", "minLength": 1, "x-path": True,
                  "description": "npz: an optional separate test file, same keys; folder: a test folder "
                                 "with the same class folders"},
    "resize": {"enum": ["stretch", "fit", "crop", "none", "bilinear", "nearest"], "default": "stretch",
               "description": "folder: how images of another size are brought to n_H × n_W: stretch to it; fit "
                              "(keep the aspect ratio, pad with black: a letterbox); crop (keep the aspect ratio, "
                              "cut the middle out); none refuses them (bilinear, nearest: stretch, as before)"},
    "resample": {"enum": ["bilinear", "nearest"], "default": "bilinear",
                 "description": "folder: Pillow's resampling for resize"},
    "skip_bad": {"type": "boolean", "default": False,
                 "description": "folder: leave out images that cannot be read, with one warning line giving their "
                                "count and the first few; false refuses them, naming the file"},
})
def load_folder(data, input_shape, seed):
    x, y, names = read_folder(data["path"], input_shape, Resize.of(data), skip_bad=data["skip_bad"])
    x_test = y_test = None
    if data.get("test_path"):
        x_test, y_test, _ = read_folder(data["test_path"], input_shape, Resize.of(data), names, "data.test_path",
                                        data["skip_bad"])
    return x, y, x_test, y_test, names

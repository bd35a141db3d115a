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
from yamlnet.data.stream import UnreadableImage, refuse_unreadable
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
    """One image as uint8 (n_H, n_W, n_C): converted to n_C channels and resized as the model takes it."""
    from PIL import Image, UnidentifiedImageError

    n_h, n_w, n_c = input_shape
    if n_c not in _MODES:
        raise DataError(f"images have 1 (grey) or 3 (RGB) channels; the model's input has {n_c}", key="input")
    try:
        with Image.open(path) as image:
            image.seek(0)  # a GIF's first frame
            image = image.convert("RGBA").convert(_MODES[n_c]) if image.mode in ("P", "PA", "LA") else \
                image.convert(_MODES[n_c])
            pixels = np.asarray(resize(image, n_w, n_h, path), dtype=np.uint8)
    except FileNotFoundError:
        raise UnreadableImage("is gone (deleted or moved since the folder was read)", file=str(path)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"cannot be read as an image ({type(exc).__name__}: {exc})", file=str(path)) from None
    return pixels.reshape(n_h, n_w, n_c)


class DataWarning(YamlnetWarning):
    """Something in the data was passed over (``data.skip_bad``): the message says what."""


def skipped(files: list, where: str) -> None:
    """One warning line for the unreadable images that ``data.skip_bad`` passed over, if any."""
    if files:
        import warnings
        shown = ", ".join(map(str, files[:3])) + (", …" if len(files) > 3 else "")
        warnings.warn(DataWarning(f"{where}: skipped {len(files)} unreadable image{'s' * (len(files) > 1)} "
                                  f"(data.skip_bad): {shown}"), stacklevel=2)


def list_folder(folder: Path, classes: list[str] | None = None, what: str = "data.path"):
    """(image files, labels (N,), class names) of a folder of class folders. With ``classes`` (the
    training folder's), a class folder not among them is an error."""
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
    return files, np.array(labels, dtype=np.int64), names


class FolderImages:
    """The images of a list of files, decoded when asked for: ``images[indices]`` → uint8
    (k, n_H, n_W, n_C). An unreadable one raises ``UnreadableImage`` naming it."""

    dtype = np.dtype(np.uint8)

    def __init__(self, files: list[Path], input_shape, resize: Resize):
        self.files, self.input_shape, self.resize = files, tuple(input_shape), resize
        self.shape = (len(files), *self.input_shape)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index) -> np.ndarray:
        rows = np.arange(len(self))[index]
        if rows.ndim == 0:
            return read_image(self.files[rows], self.input_shape, self.resize)
        out = np.empty((len(rows), *self.input_shape), np.uint8)
        for position, row in enumerate(rows.tolist()):
            out[position] = read_image(self.files[row], self.input_shape, self.resize)
        return out

    def decode_all(self, description: str, skip_bad: bool, chunk: int = 64):
        """Every image, in order, decoded in a few threads: yields (rows, uint8 images, bad) per chunk of
        rows, where ``bad`` lists the positions within it that could not be read (left as zeros) — an
        error naming the first instead, unless ``skip_bad``."""
        from concurrent.futures import ThreadPoolExecutor

        from yamlnet.data.stream import READ_THREADS
        from yamlnet.progress import track

        def decode(rows):
            out, bad = np.zeros((len(rows), *self.input_shape), np.uint8), []
            for position, row in enumerate(rows):
                try:
                    out[position] = read_image(self.files[row], self.input_shape, self.resize)
                except UnreadableImage as error:
                    if not skip_bad:
                        raise refuse_unreadable(error) from None
                    bad.append(position)
            return rows, out, bad

        chunks = [range(start, min(start + chunk, len(self))) for start in range(0, len(self), chunk)]
        with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="yamlnet-decode") as pool:
            # (map submits every chunk at once: a window of them keeps the decoded ones few)
            window = 4 * READ_THREADS
            pending = [pool.submit(decode, rows) for rows in chunks[:window]]
            for at in track(range(len(chunks)), description):
                rows, out, bad = pending.pop(0).result()
                if at + window < len(chunks):
                    pending.append(pool.submit(decode, chunks[at + window]))
                yield rows, out, bad


def read_folder(folder: Path, input_shape, resize: Resize, classes: list[str] | None = None, what: str = "data.path",
                skip_bad: bool = False, cache: str = "memory", cache_dir: str | None = None):
    """(images, y (N,), class names) of a folder of class folders: x (N, n_H, n_W, n_C) float32 decoded
    into memory (``cache`` memory), or raw images read when asked for — from their files (none) or from
    their disk cache (disk, made first where it is missing or stale). An image that cannot be read is
    an error naming it, or with ``skip_bad`` left out (one warning line in all): found by the pass
    that decodes them all (reading, caching, or with none and ``skip_bad`` a first pass)."""
    from yamlnet.data.cache import disk_cache
    from yamlnet.data.stream import Rows

    files, labels, names = list_folder(folder, classes, what)
    images, bad = FolderImages(files, input_shape, resize), []
    if cache == "disk":
        images, bad = disk_cache(images, resize, cache_dir, f"caching {folder}", skip_bad)
    elif cache == "memory" or skip_bad:
        x = np.empty(images.shape, dtype=np.float32) if cache == "memory" else None
        for rows, out, unreadable in images.decode_all(f"reading {folder}", skip_bad):
            if x is not None:
                x[rows.start:rows.stop] = out
            bad += [rows.start + position for position in unreadable]
        images = x if x is not None else images
    skipped([files[row] for row in bad], str(folder))
    if bad:
        good = np.setdiff1d(np.arange(len(files)), bad)
        images, labels = images[good] if cache == "memory" else Rows(images, good), labels[good]
    return images, labels, names


def count_images(data: dict) -> int:
    """How many images the folder data set holds (for the memory estimate), 0 where a folder is missing."""
    total = 0
    for key in ("path", "test_path"):
        folder = Path(data.get(key) or "")
        if data.get(key) and folder.is_dir():
            total += sum(len(image_files(path)) for path in folder.iterdir() if path.is_dir())
    return total


@register_dataset("folder", required=("path",), count=lambda data, _: count_images(data), streams="disk",
                  description="your own images: a folder with one sub-folder "
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
                                "count and the first few (and one an epoch for those that become unreadable while "
                                "training); false refuses them, naming the file"},
    "cache_dir": {"type": "string", "minLength": 1, "x-path": True,
                  "description": "folder, with cache disk: where the decoded images are kept for later runs "
                                 "(default $YAMLNET_CACHE_DIR, else ~/.cache/yamlnet)"},
})
def load_folder(data, input_shape, seed):
    resize, cache, skip_bad = Resize.of(data), data.get("cache", "memory"), data["skip_bad"]

    def read(key, classes=None, what="data.path"):
        return read_folder(data[key], input_shape, resize, classes, what, skip_bad, cache, data.get("cache_dir"))

    x, y, names = read("path")
    x_test = y_test = None
    if data.get("test_path"):
        x_test, y_test, _ = read("test_path", names, "data.test_path")
    return x, y, x_test, y_test, names

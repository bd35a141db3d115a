"""mnist: IDX files as MNIST and Fashion-MNIST ship them, gzipped or raw, in one folder."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from yamlnet.data.registry import PATH_KEY, register_dataset
from yamlnet.errors import DataError

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (magic 0x0000 TT DD, DD big-endian sizes, then the data) as an array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot be read: {exc}", file=str(path)) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError("is not an IDX file (bad magic number)", file=str(path))
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(np.int64)
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"is truncated or padded: {len(raw):,} bytes, the header says {expected:,}", file=str(path))
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(dims)


def find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


@register_dataset("mnist", required=("path",), n_classes=10, keys={"path": PATH_KEY},
                  description="MNIST or Fashion-MNIST IDX files (train-*, t10k-*), gzipped or raw")
def load_mnist(data, input_shape, seed):
    folder = Path(data["path"])
    if not folder.is_dir():
        raise DataError("no such folder (data.path names the folder holding the four IDX files)", file=str(folder))
    arrays = {}
    for split, stems in FILES.items():
        paths = [find(folder, stem) for stem in stems]
        if None in paths:
            if split == "test":
                arrays[split] = (None, None)
                continue
            missing = stems[paths.index(None)]
            raise DataError(f"holds no {missing} (or {missing}.gz)", file=str(folder))
        arrays[split] = tuple(read_idx(path) for path in paths)
    return (*arrays["train"], *arrays["test"])

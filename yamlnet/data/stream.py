"""Data larger than memory: images read a batch at a time, ahead of the training that uses them.

``data.cache`` says where the pixels live while training: ``memory`` (decoded once, normalized in
place: the fast path), ``none`` (read from their files for every batch) or ``disk`` (a folder's
images decoded once into a uint8 cache file, read from it for every batch). ``Streamed`` gives the
images of the last two as ``x[indices]`` gives them in memory — the same arithmetic, so the same
numbers bit for bit — and ``Feed`` reads an epoch's batches ahead in a few threads (Pillow and
``os.pread`` release the GIL).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from yamlnet.data.registry import DATASETS
from yamlnet.errors import DataError, ReadError
from yamlnet.sizes import format_bytes, parse_size

#: threads that read batches ahead; more than the cores would only take their time from training
READ_THREADS = max(1, min(4, os.cpu_count() or 1))
#: samples gathered at a time for predictions from images in memory (the model runs them 64 at a time)
PREDICT_BATCH = 512
#: … and from streamed images, read ahead like training's batches
STREAMED_PREDICT_BATCH = 64
#: bytes of raw images a pass over a data set (normalization, checks) holds at a time
PASS_BYTES = 32 * 2**20


class UnreadableImage(ReadError):
    """An image that cannot be read (deleted, truncated, not an image): what ``data.skip_bad`` skips."""


def refuse_unreadable(error: DataError) -> DataError:
    """The error of an unreadable image where ``data.skip_bad`` is false: it says how to skip them."""
    return DataError(f"{error.message}; data.skip_bad: true skips unreadable images", file=error.file)


def normalize(images: np.ndarray, shift: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(images − shift) / scale`` in place, per channel; the one formula of every cache, so that a
    batch read from a file equals the same rows normalized in memory bit for bit."""
    images -= shift
    images /= scale
    return images


def passes(indices: np.ndarray, image_shape) -> list[np.ndarray]:
    """``indices`` cut into runs of at most ``PASS_BYTES`` of float32 images (at least one image each)."""
    step = max(1, PASS_BYTES // (4 * int(np.prod(image_shape))))
    return [indices[start:start + step] for start in range(0, len(indices), step)]


class Rows:
    """The rows ``kept`` of ``source``, renumbered 0..len(kept) − 1 (a source less its unreadable images)."""

    def __init__(self, source, kept: np.ndarray):
        self.source, self.kept = source, np.asarray(kept)
        self.shape, self.dtype = (len(self.kept), *source.shape[1:]), source.dtype

    def __len__(self) -> int:
        return len(self.kept)

    def __getitem__(self, index):
        return self.source[self.kept[index]]


class Streamed:
    """Normalized images (N, n_H, n_W, n_C) of ``dtype`` read from ``raw`` — anything that gives rows of
    raw pixels for an index array, as ``ArrayFile`` and ``FolderImages`` do — only when asked for:
    ``x[indices]`` reads, converts and normalizes those rows, once ``set_normalization`` has been
    given the training part's statistics."""

    ndim = 4

    def __init__(self, raw, image_shape: tuple[int, int, int], dtype):
        self.raw, self.image_shape, self.dtype = raw, tuple(image_shape), np.dtype(dtype)
        self.shape = (len(raw), *self.image_shape)
        self.shift = self.scale = None

    def __len__(self) -> int:
        return len(self.raw)

    def read_raw(self, index) -> np.ndarray:
        """Rows ``index`` as read, converted to ``dtype`` (k, n_H, n_W, n_C)."""
        rows = np.asarray(self.raw[index])
        return rows.astype(self.dtype).reshape(-1, *self.image_shape)

    def __getitem__(self, index) -> np.ndarray:
        if self.raw.dtype != np.uint8:
            return normalize(self.read_raw(index), self.shift, self.scale)
        # 8-bit pixels (images, the disk cache): every normalized value is one of 256 per channel, looked
        # up in a table made by ``normalize`` itself — the same values, 3 × faster than the arithmetic
        rows = np.asarray(self.raw[index]).reshape(-1, *self.image_shape)
        out = np.empty(rows.shape, self.dtype)
        for channel in range(rows.shape[-1]):
            out[..., channel] = self._lookup[channel][rows[..., channel]]
        return out

    def set_normalization(self, shift: np.ndarray, scale: np.ndarray) -> None:
        """(raw − shift) / scale, per channel (n_C,): what ``x[indices]`` gives from now on."""
        self.shift, self.scale = shift, scale
        if self.raw.dtype == np.uint8:  # (n_C, 256): the normalized value of each 8-bit value in each channel
            values = np.repeat(np.arange(256, dtype=self.dtype)[:, None], self.image_shape[-1], axis=1)
            self._lookup = np.ascontiguousarray(normalize(values, shift, scale).T)

    def read(self, index: np.ndarray, skip_bad: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(the rows of ``index`` that could be read, their images, the names of those that could not):
        with ``skip_bad`` an unreadable image is left out, else it is an ``UnreadableImage`` error."""
        try:
            return index, self[index], []
        except UnreadableImage:
            if not skip_bad:
                raise
        kept, bad = [], []
        for row in index.tolist():  # (only when a batch holds an unreadable image)
            try:
                self.raw[[row]]
                kept.append(row)
            except UnreadableImage as error:
                bad.append(error.file or str(row))
        kept = np.array(kept, dtype=index.dtype)
        return kept, self[kept], bad


class Feed:
    """The images of ``batches`` (a list of index arrays into ``x``), in order: ``next(feed)`` →
    (the indices read, their images). From a ``Streamed`` x, ``ahead`` batches are read ahead in
    ``READ_THREADS`` threads; ``waited`` is the time ``next`` spent waiting for them, ``skipped`` the
    unreadable images left out (``skip_bad``). From an array in memory, a batch is a gather, done
    when asked for. ``close()`` (or the end of a ``with``) drops what was read ahead and ends the threads."""

    def __init__(self, x, batches: list[np.ndarray], *, ahead: int = 4, skip_bad: bool = False):
        self.x, self.batches, self.skip_bad = x, list(batches), skip_bad
        self.position, self.waited, self.skipped = 0, 0.0, []
        self.streamed = isinstance(x, Streamed)
        self._pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="yamlnet-read") if self.streamed else None
        self._pending = []
        for _ in range(min(ahead, len(self.batches)) if self.streamed else 0):
            self._submit()

    def _submit(self) -> None:
        at = self.position + len(self._pending)
        if at < len(self.batches):
            self._pending.append(self._pool.submit(self.x.read, self.batches[at], self.skip_bad))

    def __iter__(self):
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        if self.position >= len(self.batches):
            raise StopIteration
        if not self.streamed:
            index = self.batches[self.position]
            self.position += 1
            return index, self.x[index]
        started = time.perf_counter()
        future = self._pending.pop(0)
        kept, images, bad = future.result()
        self.waited += time.perf_counter() - started
        self.skipped += bad
        self.position += 1
        self._submit()
        return kept, images

    def close(self) -> None:
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._pending = None, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


def prediction_chunks(x, indices: np.ndarray) -> list[np.ndarray]:
    """``indices`` cut into the chunks predictions gather at a time from ``x``."""
    size = STREAMED_PREDICT_BATCH if isinstance(x, Streamed) else PREDICT_BATCH
    return [indices[start:start + size] for start in range(0, len(indices), size)]


def streamed_bytes(config: dict, count: int) -> int:
    """What streamed images hold at most while training: the batch in use and those read ahead, or as
    many chunks of predictions (at most the ``count`` images of the data set), as float32 or the model's
    dtype."""
    data, training = config["data"], config["training"]
    per_image = int(np.prod(config["input"])) * (8 if training["dtype"] == "float64" else 4)
    images = (data["prefetch"] + 1) * max(training["batch_size"], STREAMED_PREDICT_BATCH)
    return min(images, count) * per_image


def image_count(config: dict) -> int | None:
    """How many images the data set holds, where it knows before reading them (a folder's are listed)."""
    dataset = DATASETS[config["data"]["dataset"]]
    return None if dataset.count is None else dataset.count(config["data"], tuple(config["input"]))


def choose_cache(config: dict, model_bytes: int = 0, count: int | None = None) -> tuple[str, str]:
    """(``data.cache``, a line saying why where yamlnet chose it): the file's, else ``memory`` when the
    decoded images (float32) fit ``training.max_memory`` beside the model's ``model_bytes`` (or would take
    no more than streaming them), else ``disk`` for a folder (decoded once into a cache file) or ``none``
    for arrays (read from their file). ``count``: the data set's ``image_count``, where the caller has it."""
    data = config["data"]
    dataset = DATASETS[data["dataset"]]
    given = data.get("cache")
    if not dataset.streams:
        if given not in (None, "memory"):
            raise DataError(f"the {dataset.name} data set is held in memory; none and disk are for folder and npz",
                            config_key=("data", "cache"))
        return "memory", ""
    if given:
        return given, ""
    count = image_count(config) if count is None else count
    decoded = count * 4 * int(np.prod(config["input"]))
    limit = parse_size(config["training"]["max_memory"])
    if decoded + model_bytes <= limit or decoded <= streamed_bytes(config, count):
        return "memory", ""
    mode = dataset.streams
    how = "decoded once into a uint8 cache file and read from it" if mode == "disk" else "read from its file"
    return mode, (f"data.cache: {mode} — the {count:,} decoded images ({format_bytes(decoded)}) do not fit "
                  f"training.max_memory ({format_bytes(limit)}) beside the model ({format_bytes(model_bytes)}): "
                  f"{how} a batch at a time")

"""Run directories: everything a training run leaves behind, written so that a crash loses nothing.

    runs/<name>/<YYYYmmdd-HHMMSS>/
      config.yaml            the resolved config: defaults filled in, overrides applied
      run.json               where it came from: the source file, the overrides, the yamlnet version
      metrics.jsonl          one JSON object per finished epoch
      checkpoints/last.npz   weights, optimizer state and loop state after the last epoch (or Ctrl-C)
      checkpoints/best.npz   weights of the best epoch so far
      summary.txt            the model summary and the final metrics
      status.json            running (with its process), finished, interrupted, failed or pruned

Checkpoints are written atomically (temporary file, fsync, rename). metrics.jsonl is cut back to
the checkpoint's epoch on resume, so a crash between the two never leaves a line twice.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from yamlnet import checkpoint
from yamlnet.config.loader import dump_yaml
from yamlnet.errors import DataError
from yamlnet.npzio import read_npz, write_npz_atomic, write_text_atomic

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.txt"  # written when a run ends: a run that has one is finished
STATUS = "status.json"
#: what ``run_status`` tells
STATES = ("running", "finished", "interrupted", "failed", "pruned")
LAST = Path("checkpoints") / "last.npz"
BEST = Path("checkpoints") / "best.npz"


def new_run_dir(config: dict, out: str | os.PathLike | None) -> Path:
    """``out``, or ``runs/<name>/<timestamp>/`` (with a suffix if that second is taken)."""
    if out is not None:
        path = Path(out)
        if (path / METRICS).exists() or (path / LAST).exists():
            raise DataError("already holds a run; resume it with --resume, or choose another --out",
                            file=str(path))
    else:
        base = Path("runs") / config["name"] / time.strftime("%Y%m%d-%H%M%S")
        path, k = base, 1
        while path.exists():
            k += 1
            path = base.with_name(f"{base.name}-{k}")
    try:
        (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the run directory: {exc.strerror}", file=str(path)) from None
    return path


def write_config(run_dir: Path, config: dict, source: str | None, overrides, cut: dict | None = None) -> None:
    """config.yaml, and run.json: where the run came from, and how its batches are cut into shards
    (``cut``: part of its arithmetic, so that a resume on another machine cuts them the same way)."""
    header = "# The resolved config of this run: defaults filled in"
    if overrides:
        header += ", overrides applied:\n" + "".join(f"#   --set {item}\n" for item in overrides)
    else:
        header += ".\n"
    write_text_atomic(run_dir / CONFIG, header + dump_yaml(config))
    from yamlnet import __version__
    info = {"source": source, "overrides": list(overrides), "yamlnet": __version__}
    write_text_atomic(run_dir / "run.json", json.dumps(info | ({"cut": cut} if cut else {}), indent=2) + "\n")


def mark(run_dir: Path, state: str, error: str = "") -> None:
    """status.json: ``running`` with this process's id and host (so that a killed run can be told from a
    live one), or how the run ended."""
    import socket

    status = {"state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if state == "running":
        status |= {"pid": os.getpid(), "host": socket.gethostname()}
    if error:
        status["error"] = error
    write_text_atomic(run_dir / STATUS, json.dumps(status) + "\n")


def run_status(run_dir: Path) -> tuple[str, str]:
    """(state, error) of a run: its status.json, where a ``running`` one whose process is gone (``kill -9``,
    a lost machine) is ``interrupted``; a run without one (an older version's) is finished if it has its
    summary, else interrupted."""
    import socket

    try:
        status = json.loads((run_dir / STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ("finished" if (run_dir / SUMMARY).is_file() else "interrupted"), ""
    state = status.get("state", "interrupted")
    if state == "running" and status.get("host", socket.gethostname()) == socket.gethostname() \
            and not _alive(status.get("pid")):
        state = "interrupted"
    return state, status.get("error", "")


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def read_info(run_dir: Path) -> dict:
    """run.json, or {} where it is missing or unreadable (a run from an older version)."""
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def extend(run_dir: Path, config: dict, overrides) -> None:
    """Record that a run goes on under ``overrides`` (``training.epochs``): config.yaml says so, run.json
    lists it, and the run is no longer finished (its summary goes until it ends again)."""
    info_path = run_dir / "run.json"
    info = read_info(run_dir)
    info["resumed_with"] = [*info.get("resumed_with", []), *overrides]
    lines = (run_dir / CONFIG).read_text(encoding="utf-8").splitlines()
    comments = [line for line in lines[:next((i for i, line in enumerate(lines) if not line.startswith("#")), 0)]]
    header = "\n".join([*comments, *(f"# resumed with --set {item}" for item in overrides)]) + "\n"
    write_text_atomic(run_dir / CONFIG, header + dump_yaml(config))
    write_text_atomic(info_path, json.dumps(info, indent=2) + "\n")
    (run_dir / SUMMARY).unlink(missing_ok=True)


def append_metrics(run_dir: Path, record: dict) -> None:
    try:
        with open(run_dir / METRICS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise DataError(f"cannot be written: {exc.strerror or exc}", file=str(run_dir / METRICS)) from None


def remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary files of writes that a crash cut short (the files they were for are intact)."""
    for folder in (run_dir, run_dir / "checkpoints"):
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a crash: everything after it is lost anyway
    return records


def truncate_metrics(run_dir: Path, n_epochs: int) -> None:
    """Keep the first ``n_epochs`` records (those the checkpoint knows of)."""
    records = read_metrics(run_dir)[:n_epochs]
    write_text_atomic(run_dir / METRICS, "".join(json.dumps(record) + "\n" for record in records))


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], state: dict) -> None:
    """A checkpoint (``yamlnet.checkpoint``'s arrays and the loop state), written atomically."""
    write_npz_atomic(path, checkpoint.with_loop_state(arrays, state))


def read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, loop state) of a checkpoint."""
    return checkpoint.split_loop_state(read_npz(path, "checkpoint"), str(path))


def model_file(path: str | os.PathLike) -> Path:
    """The weights to use from a run directory (best.npz, else last.npz), or ``path`` itself."""
    path = Path(path)
    if path.is_dir():
        for candidate in (BEST, LAST):
            if (path / candidate).is_file():
                return path / candidate
        raise DataError("is not a run directory with checkpoints (no checkpoints/best.npz or last.npz)",
                        file=str(path))
    if not path.exists():
        raise DataError("no such run directory or model file", file=str(path))
    return path

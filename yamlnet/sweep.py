"""``yamlnet sweep``: train every combination of a few hyperparameters, each in its own run directory.

A sweep is a mapping of dotted keys (as for ``--set``) to lists of values, from the model file's
``sweep:`` section or a separate file. Its runs go to ``runs/<name>/sweep-<timestamp>/run-000``, …;
``sweep.json`` records the combinations, ``results.csv`` the outcome. Started again on the same
directory, a sweep skips the runs that finished and resumes those that did not.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from yamlnet.config import load_document, resolve
from yamlnet.config.schema import SWEEP_SCHEMA, check, fill_defaults
from yamlnet.errors import ConfigError, Interrupted, YamlnetError
from yamlnet.metrics import best_value, direction
from yamlnet.plan import plan
from yamlnet.parallel import blas_environment
from yamlnet.runs import SUMMARY, read_metrics
from yamlnet.children import Stopped, run_each
from yamlnet.search import dask_client, optuna_module, run_search, train_job
from yamlnet.signals import STOP_SIGNALS

_RESERVED = set(SWEEP_SCHEMA["properties"])


def sweep_spec(source, sweep_file=None, overrides=()) -> dict:
    """The sweep section — of ``sweep_file`` if given (its whole content, or its ``sweep:`` key),
    else of the model file — validated, with defaults filled."""
    config, _ = resolve(source, overrides)
    if sweep_file is None:
        if "sweep" not in config:
            raise ConfigError("has no sweep: section; add one or pass --sweep FILE", file=str(source))
        return config["sweep"]
    document = load_document(sweep_file)
    if not (isinstance(document.data, dict) and set(document.data) == {"sweep"}):
        document.data = {"sweep": document.data}
        for table in (document.marks, document.key_marks):
            moved = {("sweep",) + path: mark for path, mark in table.items()}
            table.clear()
            table.update(moved)
    check(document, {"type": "object", "properties": {"sweep": SWEEP_SCHEMA}, "required": ["sweep"],
                     "additionalProperties": False})
    return fill_defaults(SWEEP_SCHEMA, dict(document.data["sweep"]))


def _check_ranges(spec: dict) -> None:
    """Ranges are for tpe; a range must run upwards, and a log range stay above 0."""
    for key, values in spec.items():
        if key in _RESERVED or isinstance(values, list):
            continue
        if spec["mode"] != "tpe":
            raise ConfigError(f"sweep.{key}: a range {{low, high}} is for mode: tpe; {spec['mode']} takes a list of values")
        if values["low"] >= values["high"] or (values.get("log") and values["low"] <= 0):
            raise ConfigError(f"sweep.{key}: a range needs low < high (and low > 0 with log: true), got "
                              f"{values['low']}..{values['high']}")
        if values.get("log") and values.get("step"):
            raise ConfigError(f"sweep.{key}: a range takes log: true or a step, not both")


def combinations(spec: dict) -> list[dict]:
    """The runs of a sweep: every combination of the swept values (or ``samples`` of them, drawn)."""
    keys = [key for key in spec if key not in _RESERVED]
    grid = [dict(zip(keys, values)) for values in itertools.product(*(spec[key] for key in keys))]
    if spec["mode"] == "random":
        count = min(spec.get("samples") or len(grid), len(grid))
        picked = np.random.default_rng(spec["seed"]).choice(len(grid), size=count, replace=False)
        grid = [grid[i] for i in sorted(picked)]
    return grid


def as_overrides(combination: dict) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in combination.items()]


def _finished(out: Path) -> bool:
    return (out / SUMMARY).is_file()


def _started(out: Path) -> bool:
    return (out / "checkpoints" / "last.npz").is_file()


def _result(job: dict, status: str, error: str = "") -> dict:
    out = Path(job["out"])
    return {"run": out.name, "out": str(out), "combination": job["combination"], "status": status,
            "error": error, "metrics": read_metrics(out)}


def run_one(job: dict) -> dict:
    """Train one combination in this process (or resume it, or note that it finished); never raises."""
    if _finished(Path(job["out"])):
        return _result(job, "done before")
    outcome = train_job(job)
    return {**_result(job, outcome["state"], outcome["error"]), "exit_code": outcome["exit_code"]}


def _run_processes(jobs: list[dict], workers: int, collect) -> None:
    """Each run as its own ``yamlnet train`` process, ``workers`` at a time, each with one BLAS
    thread (N runs on N cores beat N runs fighting over each core), stop signals passed on
    (``yamlnet.children``). Results come back through the run directories, so nothing crosses between
    processes but arguments and exit codes."""
    environment = blas_environment(1)
    logs = {}  # each run's stderr, by its directory

    def start(job) -> subprocess.Popen | None:
        out = Path(job["out"])
        if _finished(out):
            collect(_result(job, "done before"))
            return None
        arguments = ["--resume", str(out)] if _started(out) else [
            job["source"], "--out", str(out), *(part for item in job["overrides"] for part in ("--set", item))]
        log = logs[job["out"]] = tempfile.TemporaryFile("w+", encoding="utf-8")
        return subprocess.Popen([sys.executable, "-m", "yamlnet", "train", "--quiet", *arguments],
                                env=environment, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)

    def finish(process, job, stop_signal) -> None:
        log = logs.pop(job["out"])
        log.seek(0)
        lines = log.read().strip().splitlines()
        log.close()
        status = "ok" if process.returncode == 0 else \
            "interrupted" if process.returncode in (128 + number for number in STOP_SIGNALS) else "failed"
        error = ""
        if status == "failed":
            error = lines[-1] if lines else f"ended by signal {-process.returncode}"
        collect(_result(job, status, error))

    run_each(jobs, start, finish, workers)


def run_sweep(source, sweep_file=None, *, out=None, overrides=(), workers: int | None = None,
              dask_address: str | None = None, on_result=None) -> dict:
    """Run a sweep; returns {"dir", "metric", "rows"} with one row per combination, best first."""
    spec = sweep_spec(source, sweep_file, overrides)
    _check_ranges(spec)
    config, _ = resolve(source, overrides)
    grid = combinations(spec) if spec["mode"] != "tpe" else _search_corners(spec)
    for combination in grid:  # every combination must be possible (shapes, memory) before any runs
        try:
            plan(source, [*overrides, *as_overrides(combination)], memory_check=True)
        except YamlnetError as error:
            values = ", ".join(f"{key}={json.dumps(value)}" for key, value in combination.items())
            raise type(error)(f"the sweep combination {values} is not possible: {error}") from None
    if spec["mode"] == "tpe":
        optuna_module()  # (refused in one line before anything is made, when Optuna is missing)
    sweep_dir = Path(out) if out is not None else Path("runs") / config["name"] / time.strftime("sweep-%Y%m%d-%H%M%S")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if spec["mode"] == "tpe":
        return _search(spec, sweep_dir, source, sweep_file, overrides, workers, dask_address, on_result)
    jobs = [{"source": str(source), "overrides": [*overrides, *as_overrides(combination)],
             "combination": combination, "out": str(sweep_dir / f"run-{index:03d}")}
            for index, combination in enumerate(grid)]
    previous = sweep_dir / "sweep.json"
    if previous.is_file():
        try:
            before = [job["overrides"] for job in json.loads(previous.read_text(encoding="utf-8"))["runs"]]
        except (ValueError, KeyError, TypeError):
            before = None
        if before != [job["overrides"] for job in jobs]:
            raise ConfigError("holds another sweep (other combinations or --set); continue it as it was "
                              "started, or choose another --out", file=str(sweep_dir))
    (sweep_dir / "sweep.json").write_text(json.dumps(
        {"source": str(source), "overrides": list(overrides), "sweep": spec, "runs": jobs}, indent=2) + "\n")
    try:
        results = _execute(jobs, workers or os.cpu_count() or 1, dask_address, on_result)
    except (KeyboardInterrupt, Stopped) as stop:
        raise _interrupted(stop, "the runs it reached wrote checkpoints, no new run was started. Continue the sweep",
                           source, sweep_file, sweep_dir, overrides) from None
    return _finish(sweep_dir, results, [key for key in spec if key not in _RESERVED], spec["metric"], source,
                   overrides)


def _interrupted(stop, what: str, source, sweep_file, sweep_dir: Path, overrides) -> Interrupted:
    """The one line a stopped sweep ends with: what it kept, and the command that continues it."""
    again = " ".join([str(source), *(["--sweep", str(sweep_file)] if sweep_file else []), "--out", str(sweep_dir),
                      *(f"--set {shlex.quote(item)}" for item in overrides)])
    error = Interrupted(f"interrupted; {what} with: yamlnet sweep {again}")
    error.exit_code = getattr(stop, "exit_code", 130)
    return error


def _search_corners(spec: dict) -> list[dict]:
    """What a tpe search is checked with before it runs: every list's first and last value with every
    range's low and high (the rest of the space lies between)."""
    keys = [key for key in spec if key not in _RESERVED]
    ends = [[values[0], values[-1]] if isinstance(values, list) else [values["low"], values["high"]]
            for values in (spec[key] for key in keys)]
    return [dict(zip(keys, choice)) for choice in zip(*ends)]


def _search(spec, sweep_dir, source, sweep_file, overrides, workers, dask_address, on_result) -> dict:
    """A tpe sweep (``yamlnet.search``): its trials, rows and results.csv as a grid's."""
    record = {"source": str(source), "overrides": list(overrides), "sweep": spec}
    previous = sweep_dir / "sweep.json"
    if previous.is_file():
        try:
            before = json.loads(previous.read_text(encoding="utf-8"))
        except ValueError:
            before = None
        if not before or before.get("sweep") != spec or before.get("overrides") != list(overrides):
            raise ConfigError("holds another sweep (another search space or --set); continue it as it was "
                              "started, or choose another --out", file=str(sweep_dir))
    previous.write_text(json.dumps(record, indent=2) + "\n")
    keys = [key for key in spec if key not in _RESERVED]
    try:
        results = run_search(spec, sweep_dir, str(source), overrides, workers or os.cpu_count() or 1, dask_address,
                             on_result)
    except (KeyboardInterrupt, Stopped) as stop:
        raise _interrupted(stop, f"the trials it reached wrote checkpoints, and the study is in "
                                 f"{sweep_dir / 'study.journal'}. Continue the search", source, sweep_file, sweep_dir,
                           overrides) from None
    return _finish(sweep_dir, results, keys, spec["metric"], source, overrides)


def _finish(sweep_dir: Path, results: list[dict], keys: list[str], metric: str, source, overrides) -> dict:
    """The rows of a sweep's runs, best first; results.csv; TensorBoard's HParams summary where its runs log."""
    rows = _rows(results, metric)
    _write_csv(sweep_dir / "results.csv", rows, keys, metric)
    if "tensorboard" in resolve(source, overrides)[0]["training"]["log"]:
        from yamlnet.tracking import write_hparams
        write_hparams(sweep_dir, rows, keys, metric)
    return {"dir": sweep_dir, "metric": metric, "keys": keys, "rows": rows, "source": str(source),
            "overrides": list(overrides)}


def _execute(jobs, workers, dask_address, on_result) -> list[dict]:
    results: list[dict] = []

    def collect(result):
        results.append(result)
        if on_result:
            on_result(result)

    if dask_address:
        with dask_client(dask_address) as client:
            from dask.distributed import as_completed
            futures = client.map(run_one, jobs, pure=False)
            for future in as_completed(futures):
                collect(future.result())
    elif workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            result = run_one(job)
            collect(result)
            if result["status"] == "interrupted":  # the run caught the signal: the sweep stops with it
                raise Stopped(result["exit_code"])
    else:
        _run_processes(jobs, workers, collect)
    order = {job["out"]: index for index, job in enumerate(jobs)}
    return sorted(results, key=lambda result: order[result["out"]])




def _rows(results: list[dict], metric: str) -> list[dict]:
    rows = []
    for result in results:
        metrics = result.get("metrics") or []
        final = metrics[-1] if metrics else {}
        rows.append({"run": result["run"], **{f"set:{k}": v for k, v in result["combination"].items()},
                     "best": best_value(metrics, metric), "final_val_accuracy": final.get("val_accuracy"),
                     "final_loss": final.get("loss"), "epochs": len(metrics), "status": result["status"],
                     "error": result["error"]})
    sign = -direction(metric)  # best first
    return sorted(rows, key=lambda row: (row["status"] not in _FINISHED, row["best"] is None,
                                         sign * (row["best"] or 0), row["run"]))


#: the statuses of runs that trained to their end: only they can be the best (an interrupted run's
#: figures are those of a shorter run)
_FINISHED = {"ok", "done before"}


def _write_csv(path: Path, rows: list[dict], keys: list[str], metric: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", *keys, f"best_{metric}", "final_val_accuracy", "final_loss", "epochs", "status", "error"])
        for row in rows:
            writer.writerow([row["run"], *(json.dumps(row[f"set:{k}"]) for k in keys), _num(row["best"]),
                             _num(row["final_val_accuracy"]), _num(row["final_loss"]), row["epochs"],
                             row["status"], row["error"]])


def _num(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


#: the table fits a terminal of this many columns; results.csv keeps every value whole
TABLE_WIDTH = 100


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def _short_key(key: str) -> str:
    """``layers.conv1.filters`` → ``conv1.filters``, ``training.learning_rate`` → ``learning_rate``."""
    return key.split(".", 1)[1] if key.startswith(("training.", "data.", "layers.")) else key


def render(result: dict) -> str:
    """The table of combinations, best first, within TABLE_WIDTH columns, and the command that
    reruns the best one."""
    keys, metric = result["keys"], result["metric"]
    header = ["run", *(_short_key(k) for k in keys), f"best {metric}", "final val_acc", "epochs", "status"]
    body = [[row["run"], *(_cut(json.dumps(row[f"set:{k}"]), 16) for k in keys), _num(row["best"]),
             _num(row["final_val_accuracy"]), str(row["epochs"]),
             row["status"] + (f": {row['error']}" if row["error"] else "")] for row in result["rows"]]
    header = [_cut(cell, 18) for cell in header]
    widths = [max(len(header[i]), *(len(r[i]) for r in body)) for i in range(len(header) - 1)]
    room = max(TABLE_WIDTH - sum(widths) - 2 * len(widths), len("status"))
    lines = ["  ".join(cell.ljust(widths[i]) if i < len(widths) else _cut(cell, room)
                       for i, cell in enumerate(row)).rstrip() for row in [header, *body]]
    lines.insert(1, "─" * min(max(len(line) for line in lines), TABLE_WIDTH))
    lines.append(f"\nsweep: {result['dir']}  (results.csv)")
    best = next((row for row in result["rows"] if row["best"] is not None and row["status"] in _FINISHED), None)
    if best is not None:
        settings = [*result["overrides"], *(f"{k}={json.dumps(best['set:' + k])}" for k in keys)]
        sets = " ".join(f"--set {shlex.quote(item)}" for item in settings)
        lines.append(f"best: {best['run']} — rerun it with: yamlnet train {result['source']} {sets}".rstrip())
    failed = sum(row["status"] == "failed" for row in result["rows"])
    if failed:
        lines.append(f"{failed} of {len(result['rows'])} runs failed (their errors: results.csv)")
    return "\n".join(lines)


def failed(result: dict) -> bool:
    """Whether any run of the sweep failed (the CLI then exits 1, after the table)."""
    return any(row["status"] == "failed" for row in result["rows"])

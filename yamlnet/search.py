"""``sweep.mode: tpe``: a search that learns — Optuna's TPE sampler, and with ``prune: median`` Optuna's
MedianPruner stopping poor trials at an epoch's end.

The study lives in the sweep directory (``study.journal``, Optuna's journal file storage), so an
interrupted search resumes where it stopped: finished and pruned trials are not run again, and a trial
that was cut off runs again with its values. The sweep process alone asks the sampler for values and
tells it the results; each trial trains in its run directory ``trial-NNN`` — in this process, in a
``python -m yamlnet.search`` process of its own (``--workers N``), or on a Dask worker (``--dask``) —
and reports its metric after every epoch to the same study, whose pruner may stop it there. Processes
and Dask workers reach the study through the journal file, which Optuna locks for each write: on a
Dask cluster of several machines the sweep directory must be on a file system they all mount.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from yamlnet import runs
from yamlnet.children import Stopped, run_each
from yamlnet.errors import ConfigError, YamlnetError
from yamlnet.config.schema import SWEEP_SCHEMA
from yamlnet.metrics import best_value, direction, value_of


def dask_client(address: str):
    """A client of the Dask scheduler at ``address`` (a context manager), or one line saying what is wrong."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise ConfigError("--dask needs dask.distributed: pip install 'yamlnet[dask]'") from None
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as error:
        raise ConfigError(f"cannot reach the Dask scheduler at {address}: {error}") from None


STUDY = "study.journal"
STUDY_NAME = "yamlnet"


def optuna_module():
    try:
        import optuna
    except ImportError:
        raise ConfigError('sweep.mode: tpe searches with Optuna: pip install "yamlnet[search]"') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_study(sweep_dir: Path, spec: dict | None = None):
    """The study of ``sweep_dir``: created with the sampler, pruner and direction of ``spec``, or loaded."""
    optuna = optuna_module()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(sweep_dir / STUDY)))
    if spec is None:
        return optuna.load_study(study_name=STUDY_NAME, storage=storage)
    pruner = optuna.pruners.NopPruner() if spec["prune"] == "none" else \
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    return optuna.create_study(study_name=STUDY_NAME, storage=storage, load_if_exists=True,
                               sampler=optuna.samplers.TPESampler(seed=spec["seed"]), pruner=pruner,
                               direction="maximize" if direction(spec["metric"]) > 0 else "minimize")


def suggest(trial, key: str, values) -> object:
    """A trial's value for one swept key: one of a list (as JSON, so that lists and mappings can be
    choices), or from a range ``{low, high, log, step}`` (whole numbers when low, high and step are)."""
    if isinstance(values, list):
        return json.loads(trial.suggest_categorical(key, [json.dumps(value) for value in values]))
    low, high, step, log = values["low"], values["high"], values.get("step"), values.get("log", False)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step or 1)):
        return trial.suggest_int(key, low, high, step=step or 1, log=log)
    return trial.suggest_float(key, low, high, step=step, log=log)


def run_trial(job: dict) -> dict:
    """Train one trial (``job``: its study, trial number, source, overrides, run directory), reporting
    its metric after every epoch and stopping where the pruner says; returns its state and metrics.
    Never raises: a failure is reported as the trial's."""
    study = open_study(Path(job["sweep_dir"]))
    optuna = optuna_module()
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, job["number"])
    trial = optuna.trial.Trial(study, trial_id)
    metric = job["metric"]

    def report(record: dict) -> bool:
        trial.report(value_of(record, metric), record["epoch"])
        return trial.should_prune()

    return train_job(job, report)


def train_job(job: dict, on_epoch=None) -> dict:
    """Train a sweep's run or a search's trial (``job``: source, overrides, run directory ``out``), or resume
    it where its directory holds a checkpoint; {"state": ok, pruned, interrupted or failed, "error",
    "exit_code"}. Never raises: a run's failure, even a bug, is reported as that run's, not the sweep's."""
    from yamlnet.train import train

    out = Path(job["out"])
    try:
        if (out / runs.LAST).is_file():
            result = train(resume=out, quiet=True, on_epoch=on_epoch)
        else:
            result = train(job["source"], out=out, overrides=job["overrides"], quiet=True, on_epoch=on_epoch)
        state = "pruned" if result.pruned else "interrupted" if result.interrupted else "ok"
        return {"state": state, "error": "", "exit_code": result.exit_code}
    except YamlnetError as error:
        return {"state": "failed", "error": str(error), "exit_code": 1}
    except Exception as error:
        return {"state": "failed", "error": f"{type(error).__name__}: {error}", "exit_code": 1}


def run_search(spec: dict, sweep_dir: Path, source: str, overrides, workers: int, dask_address: str | None,
               on_result=None) -> list[dict]:
    """The trials of a TPE search, ``spec["samples"]`` in all (counting those a stopped search finished),
    ``workers`` at a time; returns one result per trial, as ``yamlnet.sweep`` rows want them."""
    optuna = optuna_module()
    study = open_study(sweep_dir, spec)
    keys = [key for key in spec if key not in RESERVED]
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                                                   optuna.trial.TrialState.FAIL)]
    for cut_off in [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]:
        study.tell(cut_off.number, state=optuna.trial.TrialState.FAIL)  # stopped with the search:
        study.enqueue_trial(cut_off.params, skip_if_exists=False)  # its values run again
    total = spec.get("samples") or 20
    remaining = max(0, total - len(done))
    results = {t.number: _result_of(sweep_dir, t, spec, keys) for t in done}

    def collect(number: int, outcome: dict) -> None:
        results[number] = outcome
        if on_result:
            on_result(outcome)

    _Runner(study, spec, sweep_dir, source, overrides, keys, workers, dask_address).run(remaining, collect)
    return [results[number] for number in sorted(results)]


#: the sweep section's own keys (not swept)
RESERVED = set(SWEEP_SCHEMA["properties"])


def _out(sweep_dir: Path, number: int) -> Path:
    return sweep_dir / f"trial-{number:03d}"


def _result_of(sweep_dir: Path, trial, spec: dict, keys: list[str]) -> dict:
    """The row of a trial a search finished before this start."""
    out = _out(sweep_dir, trial.number)
    state = {"COMPLETE": "done before", "PRUNED": "pruned"}.get(trial.state.name, "failed")
    combination = {key: json.loads(trial.params[key]) if isinstance(spec[key], list) else trial.params[key]
                   for key in keys if key in trial.params}
    return {"run": out.name, "out": str(out), "combination": combination, "status": state,
            "error": trial.user_attrs.get("error", ""), "metrics": runs.read_metrics(out) if out.is_dir() else []}


class _Runner:
    """Asks for trials, runs them (here, in processes or on Dask), and tells the study how they ended."""

    def __init__(self, study, spec, sweep_dir, source, overrides, keys, workers, dask_address):
        self.study, self.spec, self.sweep_dir, self.source = study, spec, Path(sweep_dir), source
        self.overrides, self.keys, self.workers, self.dask_address = list(overrides), keys, workers, dask_address

    def _ask(self) -> tuple[object, dict]:
        trial = self.study.ask()
        combination = {key: suggest(trial, key, self.spec[key]) for key in self.keys}
        job = {"sweep_dir": str(self.sweep_dir), "number": trial.number, "metric": self.spec["metric"],
               "source": self.source, "combination": combination, "out": str(_out(self.sweep_dir, trial.number)),
               "overrides": [*self.overrides, *(f"{key}={json.dumps(value)}" for key, value in combination.items())]}
        return trial, job

    def _tell(self, trial, job: dict, outcome: dict) -> tuple[int, dict]:
        optuna = optuna_module()
        metrics = runs.read_metrics(Path(job["out"]))
        state = outcome["state"]
        if outcome["error"] and state != "interrupted":
            trial.set_user_attr("error", outcome["error"])
        if state == "ok" and best_value(metrics, self.spec["metric"]) is not None:
            self.study.tell(trial, best_value(metrics, self.spec["metric"]))
        elif state == "pruned":
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif state != "interrupted":  # (an interrupted trial stays running: the next start runs it again)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return trial.number, {"run": Path(job["out"]).name, "out": job["out"], "combination": job["combination"],
                              "status": state, "error": outcome["error"], "metrics": metrics}

    def run(self, count: int, collect) -> None:
        """``count`` trials; ``collect(number, row)`` as each ends."""
        if self.dask_address:
            self._on_dask(count, collect)
        elif self.workers <= 1:
            for _ in range(count):
                trial, job = self._ask()
                outcome = run_trial(job)
                collect(*self._tell(trial, job, outcome))
                if outcome["state"] == "interrupted":
                    raise Stopped(outcome["exit_code"])
        else:
            self._in_processes(count, collect)

    def _in_processes(self, count: int, collect) -> None:
        """Each trial a ``python -m yamlnet.search JOB`` process with one BLAS thread, ``workers`` at once,
        stop signals passed on (``yamlnet.children``)."""
        from yamlnet.parallel import blas_environment

        environment = blas_environment(1)

        def start(asked):
            return subprocess.Popen([sys.executable, "-m", "yamlnet.search", json.dumps(asked[1])], env=environment,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
                                    text=True)

        def finish(process, asked, stop_signal):
            output = process.stdout.read().strip().splitlines()
            process.stdout.close()
            if output:
                outcome = json.loads(output[-1])
            elif stop_signal:  # stopped before it could say so: it runs again at the next start
                outcome = {"state": "interrupted", "exit_code": 128 + stop_signal, "error": ""}
            else:
                outcome = {"state": "failed", "exit_code": 1, "error": f"ended with {process.returncode}"}
            collect(*self._tell(*asked, outcome))

        run_each((self._ask() for _ in range(count)), start, finish, self.workers)

    def _on_dask(self, count: int, collect) -> None:
        from dask.distributed import wait

        with dask_client(self.dask_address) as client:
            slots = max(1, len(client.scheduler_info()["workers"]))
            pending, asked = {}, 0
            while pending or asked < count:
                while asked < count and len(pending) < slots:
                    trial, job = self._ask()
                    asked += 1
                    pending[client.submit(run_trial, job, pure=False)] = (trial, job)
                finished, _ = wait(list(pending), return_when="FIRST_COMPLETED")
                for future in finished:
                    trial, job = pending.pop(future)
                    collect(*self._tell(trial, job, future.result()))


def main() -> None:
    """A trial in a process of its own: the job as JSON in, its outcome as JSON out (last line)."""
    outcome = run_trial(json.loads(sys.argv[1]))
    print(json.dumps(outcome), flush=True)
    sys.exit(0 if outcome["state"] in ("ok", "pruned") else 130 if outcome["state"] == "interrupted" else 1)


if __name__ == "__main__":
    main()

"""Stage 4 of the pipeline: mini-batch gradient descent with the settings of the same file.

Each epoch: shuffle the training part, then per batch forward → fused softmax cross-entropy →
backward → optimizer step; then validate, append a line to metrics.jsonl, checkpoint. Everything
random comes from ``training.seed``, and the checkpoint holds every random state, so a run that
is stopped and resumed ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yamlnet import checkpoint, parallel, runs
from yamlnet.config import Document, resolve
from yamlnet.config.overrides import differences
from yamlnet.config.schema import suggest
from yamlnet.data import Feed, load_data
from yamlnet.data.augment import Augmenter
from yamlnet.errors import DataError, ReadError, TrainingError, YamlnetError
from yamlnet.evaluate import loss_and_accuracy, predict_rows
from yamlnet.memory import model_bytes
from yamlnet.metrics import direction
from yamlnet.model import Model, load_model
from yamlnet.npzio import write_text_atomic
from yamlnet.optim import OPTIMIZERS, SHAPED_BY_EPOCHS, learning_rate_at
from yamlnet.plan import check_init_weights, checked_layers
from yamlnet.progress import Reporter, epoch_header, epoch_line, make_reporter
from yamlnet.signals import StopRequest
from yamlnet.tracking import make_logs, require as require_logs
from yamlnet.summary import render


@dataclass
class LoopState:
    """Where the loop stands; saved in every checkpoint (with the arrays it cannot hold as JSON)."""

    epoch: int = 0  # epochs finished
    batch: int = 0  # batches of the current epoch finished (non-zero only after Ctrl-C)
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    shuffle_rng: dict = field(default_factory=dict)
    model_rng: dict = field(default_factory=dict)
    augment_rng: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    """What ``train`` returns: the run directory, one dict per epoch (as ``metrics.jsonl`` holds them),
    the best epoch by ``early_stopping.metric``, and whether a signal stopped the run."""

    run_dir: Path
    metrics: list[dict]
    best_epoch: int
    best_metric: str
    best_value: float | None
    interrupted: bool = False
    already_finished: bool = False  # --resume of a run that had ended: nothing was trained
    stopped_by: str = ""  # interrupted: Ctrl-C, SIGTERM or SIGHUP
    exit_code: int = 0  # interrupted: what a shell reports for that signal (130, 143, 129)
    pruned: bool = False  # stopped by ``on_epoch`` (a search's pruner), its checkpoint written

    def load_model(self):
        """The run's trained ``Model`` (its best checkpoint): it takes raw images (``Model.predict_proba``)."""
        return load_model(runs.model_file(self.run_dir))

    @property
    def final(self) -> dict:
        return self.metrics[-1] if self.metrics else {}

    def final_line(self) -> str:
        if self.interrupted:
            return (f"run: {self.run_dir}  interrupted by {self.stopped_by or 'Ctrl-C'} after {len(self.metrics)} "
                    f"epochs; resume with: yamlnet train --resume {self.run_dir}")
        if not self.metrics:
            return f"run: {self.run_dir}  (no epoch finished)"
        best = next(record for record in self.metrics if record["epoch"] == self.best_epoch)
        val = best.get("val_accuracy")
        accuracy = f"best val_accuracy {val:.4f}" if val is not None else f"best accuracy {best['accuracy']:.4f}"
        line = f"run: {self.run_dir}  {accuracy} (epoch {self.best_epoch}, by {self.best_metric})"
        return line + ("  — already finished: nothing to resume" if self.already_finished else "")


def train(source=None, out=None, overrides=(), *, resume=None, quiet: bool | None = None, curves: bool = False,
          reporter: Reporter | None = None, on_epoch=None) -> TrainResult:
    """Train the model of ``source`` (a path, YAML string or dict) and return its run.

    ``out``: the run directory (default ``runs/<name>/<timestamp>/``); ``overrides``: ``KEY=VALUE``
    strings as for ``--set``; ``resume``: a run directory to continue instead of starting one.
    ``quiet``: True prints nothing; None (default) shows a progress line and the epochs in a Jupyter
    notebook and prints nothing elsewhere; False prints as the command line does. ``curves``: in a
    notebook, learning curves redrawn after every epoch too. ``on_epoch(record)``, called after each
    epoch with its metrics.jsonl record, may return True to stop the run there (a search pruning it).
    """
    reporter = reporter or make_reporter(quiet, curves)
    try:
        trainer = _Trainer(source, out, tuple(overrides), resume, reporter, on_epoch)
        reporter.message(render(trainer.config, trainer.model.layers))  # shapes first, as Caffe prints them
        reporter.message(f"run directory: {trainer.run_dir}")
        runs.mark(trainer.run_dir, "running")
        try:
            result = trainer.run()
        except YamlnetError as error:
            runs.mark(trainer.run_dir, "failed", str(error))
            raise
        except BaseException:
            runs.mark(trainer.run_dir, "interrupted")
            raise
        runs.mark(trainer.run_dir, "pruned" if result.pruned else "interrupted" if result.interrupted else "finished")
        return result
    finally:
        reporter.close()
        if "trainer" in locals():
            trainer.close()


#: what may change on --resume: more (or fewer) epochs, and how often to checkpoint; everything else is
#: the run as it was
_EXTENDABLE = {"training.epochs", "training.checkpoint_every"}


def _resumed_config(run_dir: Path, overrides) -> tuple[dict, Document]:
    """The config of the run in ``run_dir``, with ``overrides`` that only extend it (training.epochs);
    config.yaml is rewritten to say so, and a finished run becomes unfinished again."""
    if not (run_dir / runs.CONFIG).is_file():
        raise DataError("is not a run directory (no config.yaml)", file=str(run_dir))
    config, document = resolve(run_dir / runs.CONFIG)
    if not overrides:
        return config, document
    extended, document = resolve(run_dir / runs.CONFIG, overrides)
    changed = differences(config, extended)
    if changed - _EXTENDABLE:
        raise DataError(f"--resume continues a run as it was configured; of its keys only "
                        f"{', '.join(sorted(_EXTENDABLE))} may change, not {', '.join(sorted(changed - _EXTENDABLE))}",
                        file=str(run_dir))
    schedule = config["training"]["lr_schedule"]["type"]
    if "training.epochs" in changed and schedule in SHAPED_BY_EPOCHS:
        raise DataError(f"its {schedule} learning-rate schedule is shaped by training.epochs, so a run extended "
                        f"to more epochs would not be the run trained that long from the start; start a new run "
                        f"(training.init_weights can take these weights)", file=str(run_dir))
    done = len(runs.read_metrics(run_dir))
    if "training.epochs" in changed and extended["training"]["epochs"] < done:
        raise DataError(f"has trained {done} epochs already; training.epochs can only take it further",
                        file=str(run_dir))
    if changed:
        runs.extend(run_dir, extended, overrides)
    return extended, document


@dataclass
class EarlyStopping:
    """``training.early_stopping``: the metric watched (a validation metric falls back to the training one
    where there is no validation part), how long it may fail to improve, by how much it must."""

    metric: str
    patience: int
    min_delta: float

    @classmethod
    def of(cls, settings: dict, has_validation: bool) -> "EarlyStopping":
        metric = settings["metric"]
        metric = metric if has_validation or not metric.startswith("val_") else metric[4:]
        return cls(metric, settings["patience"], settings["min_delta"])

    def improved(self, state: LoopState, record: dict) -> bool:
        """Whether the epoch of ``record`` is the best so far; ``state``'s best and bad epochs updated."""
        value = record[self.metric]
        if state.best is None or direction(self.metric) * (value - state.best) > self.min_delta:
            state.best, state.best_epoch, state.bad_epochs = value, state.epoch, 0
            return True
        state.bad_epochs += 1
        return False

    def exhausted(self, state: LoopState) -> bool:
        return bool(self.patience) and state.bad_epochs >= self.patience


def class_weights(setting, classes: list[str], train_labels: np.ndarray) -> np.ndarray | None:
    """``training.class_weights`` as an array (C,) in label order: ``balanced`` gives class c the weight
    n / (C · n_c) from the training part's labels (scikit-learn's and Keras users' "balanced"); a mapping
    names classes (the others weigh 1). None without the key. A name that is not a class, or a balanced
    class with no training sample, is a ``DataError`` located at that key."""
    if setting is None:
        return None
    if setting == "balanced":
        counts = np.bincount(train_labels, minlength=len(classes))
        if not counts.all():
            missing = classes[int(np.argmin(counts))]
            raise DataError(f"balanced weights need every class in the training part, and {missing} has no image",
                            config_key=("training", "class_weights"))
        return len(train_labels) / (len(classes) * counts)
    weights = np.ones(len(classes))
    for name, weight in setting.items():
        name = str(name)  # (a file's {3: 2.0} names the class "3")
        if name not in classes:
            raise DataError(f"is not a class of the data{suggest(name, classes)} (classes: {', '.join(classes)})",
                            config_key=("training", "class_weights", name))
        weights[classes.index(name)] = weight
    return weights


def load_training_data(model: Model, config: dict, document: Document):
    """The data of ``config``, split and normalized (``yamlnet.data.load_data``), its errors located in the
    file; ``model`` takes its normalization, class names and ``training.class_weights``."""
    try:
        data = load_data(config, model.output_shape[0], dtype=model.dtype,
                         model_bytes=model_bytes(config, model.layers))
        weights = class_weights(config["training"].get("class_weights"), data.classes, data.y[data.train])
    except DataError as error:
        message = f"{error.file}: {error.message}" if error.file else error.message
        key = error.config_key or ()
        raise document.error(key, message, at_key=key[:2] == ("training", "class_weights") and len(key) > 2,
                             kind=DataError) from None
    model.normalization = (data.shift, data.scale)
    model.classes = data.classes
    model.executor.loss.weights = weights
    return data


class _Trainer:
    def __init__(self, source, out, overrides, resume, reporter, on_epoch=None):
        self.reporter, self.on_epoch = reporter, on_epoch
        config, document = self._config(source, overrides, resume)
        self.config, self.training = config, config["training"]
        require_logs(config)
        # the one sequence of refusals (a resumed run loads its own weights, not training.init_weights)
        self.model = Model(config, document, checked_layers(config, document, init_weights=resume is None))
        self.data = self._load_data(document)
        if resume is None:
            self._load_initial_weights(document)
        self.optimizer = self._optimizer()
        self.shuffle_rng = np.random.default_rng([self.training["seed"], 1])
        self.augment = Augmenter.of(config["data"]["augment"], np.random.default_rng([self.training["seed"], 3]),
                                    self.data)
        self.n_batches = math.ceil(len(self.data.train) / self.training["batch_size"])
        self.state, self.order, self.feed = LoopState(), None, None
        self.stopping = EarlyStopping.of(self.training["early_stopping"], len(self.data.val) > 0)
        if resume is not None:
            self._restore()
        else:
            self._start_run(source, out, overrides)
        self.metrics = runs.read_metrics(self.run_dir)
        self.logs = make_logs(config, self.run_dir, self.state.epoch)

    def close(self) -> None:
        """End the model's worker processes, the threads reading images ahead and the run's logs."""
        self._close_feed()
        self.model.close_workers()
        for log in self.logs:
            log.close()

    def _config(self, source, overrides, resume) -> tuple[dict, Document]:
        """The resolved config: the file's with its overrides, or the resumed run's (extended)."""
        if resume is not None:
            self.run_dir = Path(resume)
            config, document = _resumed_config(self.run_dir, overrides)
        else:
            if source is None:
                raise DataError("train needs a model file, or --resume with a run directory")
            config, document = resolve(source, overrides)
        config.pop("sweep", None)  # a run is one point of a sweep; config.yaml holds that point only
        return config, document

    def _load_data(self, document: Document):
        """The data, split and normalized; the model takes its normalization, class names and class weights."""
        data = load_training_data(self.model, self.config, document)
        for line in (data.note, self._loss_text()):
            if line:
                self.reporter.message(line)
        return data

    def _loss_text(self) -> str:
        """How the loss differs from plain cross-entropy, in one line (or nothing where it does not)."""
        loss, parts = self.model.executor.loss, []
        if loss.smoothing:
            parts.append(f"label smoothing {loss.smoothing:g}")
        if loss.weights is not None:
            parts.append("class weights " + ", ".join(f"{name} {weight:.3g}"
                                                     for name, weight in zip(self.model.classes, loss.weights)))
        return "loss: cross-entropy with " + "; ".join(parts) if parts else ""

    def _optimizer(self):
        """The optimizer of every parameter but those of ``training.freeze`` (no updates, no state)."""
        frozen = set(self.training["freeze"])
        return OPTIMIZERS[self.training["optimizer"]](
            {key: value for key, value in self.model.parameters().items() if key.split("/")[0] not in frozen},
            self.training)

    def _start_run(self, source, out, overrides) -> None:
        """A new run directory: config.yaml, run.json (with the cut of its batches) and a first checkpoint,
        so that from the start it always holds weights to resume from."""
        self.run_dir = runs.new_run_dir(self.config, out)
        cut = {"shards": self.training["shards"], "min_shard_macs": parallel.MIN_SHARD_MACS,
               "batch": self.model.shards.cut(min(self.training["batch_size"], len(self.data.train)))}
        runs.write_config(self.run_dir, self.config, str(source) if not isinstance(source, dict) else None,
                          overrides, cut)
        self._save_last()

    def _load_initial_weights(self, document) -> None:
        """``training.init_weights``: copy the weights (and batchnorm state) of every layer that fits;
        say what was loaded and what was left fresh, and why."""
        reasons, arrays = check_init_weights(self.config, self.model.layers, document)  # (checked: now the arrays)
        if not reasons:
            return
        source = runs.model_file(self.training["init_weights"])
        loaded = [name for name, why in reasons.items() if not why]
        for layer in self.model.layers:
            if layer.name in loaded:
                for table in (layer.params, layer.state):
                    for key, value in table.items():
                        value[...] = checkpoint.layer_arrays(arrays, layer)[key]
        fresh = [f"{name} ({why})" for name, why in reasons.items() if why]
        self.reporter.message(f"init_weights {source}: loaded {', '.join(loaded) or 'no layer'}"
                              + (f"; fresh: {'; '.join(fresh)}" if fresh else ""))

    # -- checkpoints ---------------------------------------------------------------------
    def _checkpoint_arrays(self) -> dict[str, np.ndarray]:
        return checkpoint.checkpoint_arrays(self.model, self.optimizer.state, self.order if self.state.batch else None)

    def _save_last(self) -> None:
        self.state.shuffle_rng = self.shuffle_rng.bit_generator.state
        self.state.model_rng = self.model.rng.bit_generator.state
        self.state.augment_rng = self.augment.rng.bit_generator.state
        runs.save_checkpoint(self.run_dir / runs.LAST, self._checkpoint_arrays(), vars(self.state))

    def _restore(self) -> None:
        """The run as its last checkpoint left it: weights, optimizer, loop position, every random state,
        and the cut of its batches (run.json)."""
        self.model.shards.min_shard_macs = runs.read_info(self.run_dir).get("cut", {}).get("min_shard_macs")
        path = self.run_dir / runs.LAST
        if not path.is_file():
            return  # stopped before the first checkpoint: start over in the same directory
        runs.remove_stale_temporaries(self.run_dir)
        arrays, state = runs.read_checkpoint(path)
        self.model.load_weights(arrays, str(path))
        self.optimizer.load_state(checkpoint.optimizer_state(arrays), str(path))
        try:
            self.state = LoopState(**state)
            self.shuffle_rng.bit_generator.state = self.state.shuffle_rng
            self.model.rng.bit_generator.state = self.state.model_rng
            if self.state.augment_rng:  # (absent in checkpoints of runs from before augmentation)
                self.augment.rng.bit_generator.state = self.state.augment_rng
        except (TypeError, ValueError, KeyError):
            raise DataError("holds a loop state from another version of yamlnet or another program",
                            file=str(path)) from None
        self.order = checkpoint.epoch_order(arrays)
        if self.state.batch and (self.order is None or len(self.order) != len(self.data.train)):
            raise DataError("holds a mid-epoch position that does not fit the data set", file=str(path))
        runs.truncate_metrics(self.run_dir, self.state.epoch)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Epochs of batches until the last epoch or early stopping; Ctrl-C stops after a batch."""
        if (self.run_dir / runs.SUMMARY).is_file() and self.state.batch == 0:
            return self._result(interrupted=False, already_finished=True)
        # Overflow is caught as a non-finite loss (_train_batch), with a message better than NumPy's warnings.
        with StopRequest() as stop, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            while self.state.epoch < self.training["epochs"] and not self._stops_early():
                if stop.requested:  # (it came during the last epoch's validation: before this epoch draws its order)
                    return self._interrupt(stop)
                try:
                    learning_rate, started, seen_before = self._start_epoch()
                    while self.state.batch < self.n_batches and not stop.requested:
                        self._train_batch(learning_rate, started, seen_before)
                        self._checkpoint_mid_epoch()
                    if stop.requested:
                        return self._interrupt(stop)
                    self._end_epoch(learning_rate, time.perf_counter() - started)
                except ReadError as error:
                    raise self._read_fault(error) from None
                if self.on_epoch is not None and self.on_epoch(self.metrics[-1]):
                    return self._pruned()
        result = self._result(interrupted=False)
        self._write_summary(result)
        return result

    def _pruned(self) -> TrainResult:
        """``on_epoch`` asked to stop: the epoch's checkpoint is written; the run ends unfinished."""
        self.reporter.message(f"pruned after epoch {self.state.epoch}")
        result = self._result(interrupted=False)
        result.pruned = True
        return result

    def _start_epoch(self) -> tuple[float, float, int]:
        """The epoch's learning rate and order of samples (unless resuming mid-epoch)."""
        if self.state.batch == 0:
            train = self.data.train
            self.order = self.shuffle_rng.permutation(train) if self.config["data"]["shuffle"] else train
        size = self.training["batch_size"]
        self._close_feed()
        self.feed = Feed(self.data.x, [self.order[start:start + size] for start in
                                       range(self.state.batch * size, len(self.order), size)],
                         ahead=self.config["data"]["prefetch"], skip_bad=self.config["data"].get("skip_bad", False))
        self.reporter.start_epoch(self.state.epoch + 1, self.training["epochs"], self.n_batches, self.state.batch)
        rate = learning_rate_at(self.training, self.state.epoch, self.metrics)
        return rate, time.perf_counter(), self.state.seen

    def _train_batch(self, learning_rate: float, started: float, seen_before: int) -> None:
        """One gradient step on the next batch, augmented as ``data.augment`` says."""
        state = self.state
        index, images = next(self.feed)
        if len(index) == 0:  # (every image of the batch was unreadable, and skipped)
            state.batch += 1
            return
        labels = self.data.y[index]
        loss, probs = self.model.train_step_forward(self.augment(images), labels)
        if not math.isfinite(loss):
            raise TrainingError(f"the loss became {loss} in epoch {state.epoch + 1}, batch {state.batch + 1}; try a "
                                f"smaller learning_rate (now {learning_rate:g}). {runs.LAST} keeps the last good "
                                f"weights", file=str(self.run_dir))
        self.optimizer.step(self.model.gradients(), learning_rate)
        state.batch += 1
        state.loss_sum += loss * len(index)
        state.correct += int(np.sum(probs.argmax(axis=1) == labels))
        state.seen += len(index)
        elapsed = max(time.perf_counter() - started, 1e-9)
        rate = (state.seen - seen_before) / elapsed
        if self.feed.streamed:
            self.reporter.waiting(self.feed.waited / elapsed)
        self.reporter.batch(state.batch, state.loss_sum / state.seen, state.correct / state.seen, rate)

    def _checkpoint_mid_epoch(self) -> None:
        """``training.checkpoint_every``: a checkpoint every N batches (the epoch's last is its end's)."""
        every = self.training["checkpoint_every"]
        if every and self.state.batch % every == 0 and self.state.batch < self.n_batches:
            self._save_last()

    def _interrupt(self, stop: StopRequest) -> TrainResult:
        """Ctrl-C, SIGTERM or SIGHUP: the batch in progress has finished; checkpoint and say how to resume."""
        self._save_last()
        self.reporter.message(f"interrupted by {stop.name} in epoch {self.state.epoch + 1} (batch {self.state.batch} "
                              f"of {self.n_batches}); checkpoint written")
        result = self._result(interrupted=True)
        result.stopped_by, result.exit_code = stop.name, stop.exit_code
        return result

    def _end_epoch(self, learning_rate: float, seconds: float) -> None:
        state = self.state
        record = {"epoch": state.epoch + 1, "loss": state.loss_sum / state.seen,
                  "accuracy": state.correct / state.seen, "val_loss": None, "val_accuracy": None,
                  "learning_rate": learning_rate, "seconds": round(seconds, 3)}
        skipped, skip_bad = self.feed.skipped, self.feed.skip_bad
        self._close_feed()
        if len(self.data.val):
            probs, rows = predict_rows(self.model, self.data.x, self.data.val, skip_bad, self.config["data"]["prefetch"])
            record["val_loss"], record["val_accuracy"] = loss_and_accuracy(probs, self.data.y[rows])
            skipped = skipped + ["a validation image"] * (len(self.data.val) - len(rows))
        if skipped:  # (data.skip_bad: images that became unreadable while training)
            shown = ", ".join(skipped[:3]) + (", …" if len(skipped) > 3 else "")
            self.reporter.message(f"epoch {state.epoch + 1}: skipped {len(skipped)} unreadable image"
                                  f"{'s' * (len(skipped) > 1)} (data.skip_bad): {shown}")
        state.epoch += 1
        state.batch, state.loss_sum, state.correct, state.seen = 0, 0.0, 0, 0
        self.order = None
        if self.stopping.improved(state, record):
            runs.save_checkpoint(self.run_dir / runs.BEST, self._checkpoint_arrays(), {"epoch": state.epoch})
        runs.append_metrics(self.run_dir, record)
        self.metrics.append(record)
        for log in self.logs:
            log.epoch(record, self.model)
        self._save_last()
        self.reporter.end_epoch(record, self.training["epochs"])

    def _close_feed(self) -> None:
        if self.feed is not None:
            self.feed.close()

    def _read_fault(self, error: ReadError) -> ReadError:
        """An image (or data file) that could be read when the run began cannot be now: the run stops
        where it stands, a checkpoint written, with one line naming it."""
        self._close_feed()
        self._save_last()
        return ReadError(f"{error.message}; training stopped in epoch {self.state.epoch + 1} after batch "
                         f"{self.state.batch}, checkpoint written (data.skip_bad: true skips unreadable images); "
                         f"resume with: yamlnet train --resume {self.run_dir}", file=error.file)

    def _stops_early(self) -> bool:
        if self.stopping.exhausted(self.state):
            self.reporter.message(f"early stopping: {self.stopping.metric} has not improved for "
                                  f"{self.stopping.patience} epochs")
            return True
        return False

    def _result(self, interrupted: bool, already_finished: bool = False) -> TrainResult:
        return TrainResult(self.run_dir, list(self.metrics), self.state.best_epoch, self.stopping.metric,
                           self.state.best, interrupted, already_finished)

    def _write_summary(self, result: TrainResult) -> None:
        lines = [render(self.config, self.model.layers), ""]
        lines += [epoch_header(self.training["epochs"])]
        lines += [epoch_line(record, self.training["epochs"]) for record in result.metrics]
        loss = self._loss_text()
        lines += ["", result.final_line()] + ([loss] if loss else [])
        write_text_atomic(self.run_dir / runs.SUMMARY, "\n".join(lines) + "\n")

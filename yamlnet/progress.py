"""What ``train`` prints while it runs: a progress bar on a terminal, a line every few seconds
elsewhere (logs, CI), one line per finished epoch, and nothing but the final line with --quiet."""

from __future__ import annotations

import sys
import time


def _epoch_width(epochs: int) -> int:
    return max(len("epoch"), 2 * len(str(epochs)) + 1)


def epoch_header(epochs: int) -> str:
    """The column names above the epoch lines (a table keeps every line within 80 columns)."""
    return (f"{'epoch':>{_epoch_width(epochs)}}  {'loss':>9}  {'acc':>6}  {'val_loss':>9}  {'val_acc':>7}  "
            f"{'lr':>9}  {'time':>7}")


def epoch_line(record: dict, epochs: int) -> str:
    """One finished epoch, under ``epoch_header``: at most 61 columns."""
    epoch = f"{record['epoch']}/{epochs}"
    has_val = record.get("val_loss") is not None
    val_loss = _fit(record["val_loss"], 9) if has_val else f"{'-':>9}"
    val_acc = f"{record['val_accuracy']:7.4f}" if has_val else f"{'-':>7}"
    return (f"{epoch:>{_epoch_width(epochs)}}  {_fit(record['loss'], 9)}  {record['accuracy']:6.4f}  {val_loss}  "
            f"{val_acc}  {record['learning_rate']:9.3g}  {record['seconds']:6.1f}s")


def _fit(value: float, width: int) -> str:
    text = f"{value:{width}.4f}"
    return text if len(text) <= width else f"{value:{width}.3g}"


class Reporter:
    """Silent (``--quiet``); the base of the others."""

    def start_epoch(self, epoch: int, epochs: int, n_batches: int, done: int) -> None: ...
    def batch(self, done: int, loss: float, accuracy: float, samples_per_s: float) -> None: ...
    def waiting(self, share: float) -> None:
        """The share of the epoch's time so far that training waited for images (``data.cache`` none
        or disk); said beside the batches' figures while it is 5 % or more."""
        self.waited = share

    def _waited(self) -> str:
        share = getattr(self, "waited", 0.0)
        return f"  waiting for data {share:.0%}" if share >= 0.05 else ""
    def end_epoch(self, record: dict, epochs: int) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


class PlainReporter(Reporter):
    """Lines only: every ``every`` seconds within an epoch, and one per epoch."""

    def __init__(self, stream=None, every: float = 5.0):
        self.stream, self.every = stream or sys.stdout, every

    def start_epoch(self, epoch, epochs, n_batches, done):
        self.epoch, self.epochs, self.n_batches = epoch, epochs, n_batches
        self.last = time.perf_counter()

    def batch(self, done, loss, accuracy, samples_per_s):
        if time.perf_counter() - self.last >= self.every:
            self.last = time.perf_counter()
            self.message(f"epoch {self.epoch}/{self.epochs}  batch {done}/{self.n_batches}  loss {loss:.4f}  "
                         f"acc {accuracy:.4f}  {samples_per_s:,.0f} samples/s{self._waited()}")

    def end_epoch(self, record, epochs):
        if not getattr(self, "header_shown", False):
            self.message(epoch_header(epochs))
            self.header_shown = True
        self.message(epoch_line(record, epochs))

    def message(self, text):
        print(text, file=self.stream, flush=True)


class RichReporter(PlainReporter):
    """A rich progress bar for the batches of each epoch (loss, accuracy, samples/s, time left)."""

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = console
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                                 console=console, transient=True)
        self.progress.start()
        self.task = None

    def start_epoch(self, epoch, epochs, n_batches, done):
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=n_batches, completed=done, stats="")

    def batch(self, done, loss, accuracy, samples_per_s):
        self.progress.update(self.task, completed=done,
                             stats=f"loss {loss:.4f} acc {accuracy:.4f} {samples_per_s:,.0f} samples/s{self._waited()}")

    def message(self, text):
        self.progress.console.print(text, highlight=False, markup=False)

    def close(self):
        self.progress.stop()


class NotebookReporter(PlainReporter):
    """In a Jupyter notebook: one progress line updated in place (at most a few times a second), the
    epoch table beneath it, and with ``curves`` the learning curves redrawn after every epoch — each
    a display updated in place, so a cell holds three outputs however long the run (IPython's display,
    which every notebook has; matplotlib for the curves)."""

    def __init__(self, curves: bool = False, every: float = 0.25):
        from IPython.display import display

        self.every, self.curves, self.records, self.lines = every, curves, [], []
        self.status = display({"text/plain": ""}, raw=True, display_id=True)
        self.table = display({"text/plain": ""}, raw=True, display_id=True)
        self.figure = display({"text/plain": ""}, raw=True, display_id=True) if curves else None

    def batch(self, done, loss, accuracy, samples_per_s):
        if time.perf_counter() - self.last >= self.every or done == self.n_batches:
            self.last = time.perf_counter()
            self.status.update({"text/plain": f"epoch {self.epoch}/{self.epochs}  batch {done}/{self.n_batches}  "
                                              f"loss {loss:.4f}  acc {accuracy:.4f}  {samples_per_s:,.0f} samples/s"
                                              f"{self._waited()}"},
                               raw=True)

    def end_epoch(self, record, epochs):
        if not self.lines:
            self.lines.append(epoch_header(epochs))
        self.lines.append(epoch_line(record, epochs))
        self.table.update({"text/plain": "\n".join(self.lines)}, raw=True)
        self.records.append(record)
        if self.curves:
            import io

            from yamlnet.figures import draw_learning_curves
            buffer = io.BytesIO()
            draw_learning_curves(self.records, buffer)
            self.figure.update({"image/png": buffer.getvalue(), "text/plain": "learning curves"}, raw=True)

    def message(self, text):
        self.lines.append(text)
        self.table.update({"text/plain": "\n".join(self.lines)}, raw=True)


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (IPython's, with a frontend that shows rich output)."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def make_reporter(quiet: bool | None, curves: bool = False) -> Reporter:
    """``quiet``: nothing; None (the Python API's default): a notebook's progress in a notebook, nothing
    elsewhere; False: a progress bar on a terminal, lines elsewhere (the command line)."""
    if quiet or (quiet is None and not in_notebook()):
        return Reporter()
    if in_notebook():
        return NotebookReporter(curves)
    from rich.console import Console

    console = Console()
    return RichReporter(console) if console.is_terminal else PlainReporter()


def track(items: list, description: str):
    """Yield ``items``; on a terminal, a progress bar appears once this has taken more than half a
    second (reading a folder of images), and is gone when it ends."""
    started, progress, task = time.perf_counter(), None, None
    try:
        for done, item in enumerate(items):
            if progress is None and done and time.perf_counter() - started > 0.5 and sys.stderr.isatty():
                from rich.console import Console
                from rich.progress import Progress
                progress = Progress(console=Console(stderr=True), transient=True)
                progress.start()
                task = progress.add_task(description, total=len(items), completed=done)
            if progress is not None:
                progress.update(task, completed=done)
            yield item
    finally:
        if progress is not None:
            progress.stop()

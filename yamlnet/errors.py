"""Errors a user can cause. Each is one readable line; the CLI maps it to an exit status.

A message reads ``FILE:LINE:COL: key.path: what was wrong, got what`` — as much of the
location as is known. Anything that is not a ``YamlnetError`` is a bug in yamlnet.
"""

from __future__ import annotations


class YamlnetError(Exception):
    """Base class: a mistake in a model file, a data file, an option or a run directory."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 column: int | None = None, key: str | None = None, config_key: tuple | None = None):
        super().__init__(message)
        self.message = message
        self.file, self.line, self.column, self.key = file, line, column, key
        #: the model file's key this error is about, as a path (("data", "path")), where one is known
        #: but the file is not: the caller that holds the file's marks locates the error there
        self.config_key = config_key

    def __str__(self) -> str:
        where = ":".join(str(part) for part in (self.file, self.line, self.column) if part is not None)
        prefix = f"{where}: " if where else ""
        key = f"{self.key}: " if self.key else ""
        return one_line(f"{prefix}{key}{self.message}")


def one_line(text: str) -> str:
    """Escape newlines and other unprintable characters (a key or value from the file may hold
    them), so that an error is always one readable line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class ConfigError(YamlnetError):
    """The model file (or an override) is not valid YAML or does not match the schema."""


class ShapeError(YamlnetError):
    """The layers do not fit together: an output would be smaller than 1, padding is impossible."""


class DataError(YamlnetError):
    """A data set, data file or checkpoint does not match the model, or cannot be read."""


class ReadError(DataError):
    """Data that was there when training began cannot be read now (an image deleted or damaged, a file
    cut short): training stops with a checkpoint, naming it."""


class TrainingError(YamlnetError):
    """Training could not go on (the loss became NaN or infinite)."""

    exit_code = 1


class Interrupted(YamlnetError):
    """Ctrl-C: the work stopped after writing what it needs to continue; the message says how."""

    exit_code = 130


class YamlnetWarning(UserWarning):
    """Something yamlnet passed over or worked around, said in one line (``warning: …`` on stderr)."""


def show_warnings_in_one_line(every: bool = False) -> None:
    """Show yamlnet's warnings — with ``every``, all warnings: the command line's — as one line,
    ``warning: …``, like its errors (Python's own format adds the source line that raised them, of no
    use to a user); the others as before."""
    import sys
    import warnings

    shown = warnings.showwarning
    if getattr(shown, "one_line", None) in (True, every):  # (installed already, covering as much)
        return
    previous = getattr(shown, "previous", shown)

    def show(message, category, filename, lineno, file=None, line=None):
        if every or issubclass(category, YamlnetWarning):
            print(f"warning: {message}", file=file or sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    show.one_line, show.previous = every, previous
    warnings.showwarning = show

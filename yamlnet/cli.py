"""The ``yamlnet`` command. Thin: options in, one call into the API, errors mapped to exit codes.

A ``YamlnetError`` (the user's mistake) prints one line on stderr and exits with its code (2, or 1
for a training failure); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from yamlnet.errors import YamlnetError, show_warnings_in_one_line

# plain click help: typer's rich help shows every flag with a "<bool>" it does not take
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Small convolutional networks described in one YAML file, trained with NumPy.")

SET_HELP = "Override a key of the file: training.learning_rate=0.05, layers.conv1.filters=16 (repeatable)."
SetOption = typer.Option(None, "--set", help=SET_HELP, metavar="KEY=VALUE")


def _announce_builtin(file: Optional[Path]) -> Optional[Path]:
    """A name that is no file here but a built-in model's (``simple``) is that model: say so on stderr."""
    from yamlnet.config.builtin import builtin_path

    builtin = builtin_path(file) if file is not None else None
    if builtin is not None:
        typer.echo(f"{file}: the built-in model {builtin}", err=True)
        return builtin
    return file


MODEL_HELP = "The model file, or a built-in model's name (yamlnet models lists them)."
ModelFile = typer.Argument(..., help=MODEL_HELP, callback=_announce_builtin)


def _version(value: bool) -> None:
    if value:
        from yamlnet import __version__
        typer.echo(f"yamlnet {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    """Small convolutional networks described in one YAML file, trained with NumPy."""
    show_warnings_in_one_line(every=True)  # a command-line user has no use for a warning's source line


def _fail(message: str, code: int) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def user_errors(command):
    """Turn a ``YamlnetError`` into one line on stderr and its exit status."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except YamlnetError as error:
            _fail(str(error), error.exit_code)
        except BrokenPipeError:  # `yamlnet … | head`: the reader left; leave quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
        except OSError as error:  # a path given on the command line that cannot be read or written
            _fail(f"{error.filename or ''}: {error.strerror or error}".lstrip(": "), 2)
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return run


def _say_which_checkpoint(run: Path) -> None:
    """A run directory holds two checkpoints: say on stderr which one answered."""
    if run.is_dir():
        from yamlnet.runs import model_file
        typer.echo(f"model: {model_file(run)}", err=True)


@app.command()
@user_errors
def validate(files: List[Path] = typer.Argument(..., help="Model files (or built-in models' names) to check.",
                                               callback=lambda files: [_announce_builtin(f) for f in files]),
             set_: Optional[List[str]] = SetOption):
    """Check model files: schema, shapes and the training-memory estimate; one line per file."""
    from yamlnet.plan import plan

    bad = 0
    for file in files:
        try:
            plan(file, set_ or (), memory_check=True)
            typer.echo(f"{file}: ok")
        except YamlnetError as error:
            bad += 1
            typer.echo(str(error), err=True)
    if bad:
        raise typer.Exit(2)


@app.command()
@user_errors
def summary(file: Path = ModelFile,
            as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
            explain: bool = typer.Option(False, "--explain", help="Show the arithmetic behind every figure."),
            depth: Optional[int] = typer.Option(None, "--depth", min=1,
                                                help="Levels of blocks to show: 1 folds every block use into one row."),
            set_: Optional[List[str]] = SetOption):
    """Shapes, f / s / p, parameters and mult-adds of every layer, before any training."""
    from yamlnet.plan import plan
    from yamlnet.summary import render, summarize

    config, layers = plan(file, set_ or ())
    typer.echo(json.dumps(summarize(config, layers), indent=2) if as_json else render(config, layers, explain, depth))


@app.command()
@user_errors
def expand(file: Path = ModelFile, set_: Optional[List[str]] = SetOption):
    """Print the model file with its blocks and repeats written out: plain YAML that gives the same model."""
    from yamlnet.plan import expanded_yaml

    typer.echo(expanded_yaml(file, set_ or ()), nl=False)


@app.command()
@user_errors
def schema(out: Optional[Path] = typer.Option(None, "--out", help="Write it to this file instead of printing it.")):
    """Print the JSON Schema of model files (schemas/yamlnet.schema.json is this output)."""
    from yamlnet.config import build_schema
    from yamlnet.starter import write_schema

    if out is None:
        typer.echo(json.dumps(build_schema(), indent=2, ensure_ascii=False))
    else:
        typer.echo(f"wrote {write_schema(out)}")


@app.command()
def models():
    """The built-in example models: their names (use them as model files), what they are, input and data."""
    from yamlnet.config.builtin import builtin_models, description
    from yamlnet.config import load_config

    rows = []
    for name, path in builtin_models().items():
        config = load_config(path)
        rows.append((name, description(path), " × ".join(map(str, config["input"])), config["data"]["dataset"]))
    width = max(len(row[0]) for row in rows)
    for name, what, shape, dataset in rows:
        typer.echo(f"{name:<{width}}  {shape:<12} {dataset:<8} {what}")
    typer.echo("\nUse a name as a model file (yamlnet train simple), or copy one: yamlnet init my_net.yaml --from simple")


@app.command()
@user_errors
def init(file: Path = typer.Argument(..., help="The model file to write (.yaml)."),
         from_model: Optional[str] = typer.Option(None, "--from", help="Start from this built-in model."),
         dataset: str = typer.Option("digits", "--dataset", help="The data set of a new small conv net."),
         path: Optional[str] = typer.Option(None, "--path", help="The data's file or folder (npz, mnist)."),
         schema_file: Optional[Path] = typer.Option(None, "--schema", help="Where to write the JSON Schema.",
                                                    show_default="yamlnet.schema.json beside FILE"),
         force: bool = typer.Option(False, "--force", help="Overwrite FILE if it exists."),
         skip_bad: bool = typer.Option(False, "--skip-bad", help="--dataset folder: leave unreadable images out "
                                       "(data.skip_bad: true)")):
    """Write a starter model file, commented, with the JSON Schema beside it for editor completion."""
    from yamlnet.starter import init as write_starter

    for written in write_starter(file, from_model=from_model, dataset=dataset, data_path=path, schema=schema_file,
                                 force=force, skip_bad=skip_bad):
        typer.echo(f"wrote {written}")


@app.command()
@user_errors
def train(file: Optional[Path] = typer.Argument(None, help=MODEL_HELP + " Not with --resume.",
                                               callback=_announce_builtin),
          out: Optional[Path] = typer.Option(None, "--out", help="Run directory.",
                                             show_default="runs/<name>/<time>/"),
          resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final line."),
          plot_: bool = typer.Option(False, "--plot", help="Draw the run's PNGs at the end (see plot)."),
          log: Optional[List[str]] = typer.Option(None, "--log", metavar="KIND",
                                                  help="Also log to tensorboard (training.log)."),
          set_: Optional[List[str]] = SetOption):
    """Train the model with mini-batch gradient descent, as the file says."""
    from yamlnet.train import train as run_training

    if resume is not None and file is not None:
        _fail("--resume continues a run as it was configured: give no model file (--set training.epochs=N "
              "extends it)", 2)
    overrides = [*(set_ or ()), *([f"training.log={json.dumps(sorted(set(log)))}"] if log else [])]
    result = run_training(file, out, overrides, resume=resume, quiet=quiet)
    if plot_ and not result.interrupted:
        from yamlnet.plots import plot as draw_plots
        draw_plots(result.run_dir)
    typer.echo(result.final_line())
    if result.interrupted:
        raise typer.Exit(result.exit_code)


@app.command("lr-find")
@user_errors
def lr_find(file: Path = ModelFile,
            start: float = typer.Option(1e-5, "--start", help="The first learning rate."),
            end: float = typer.Option(1.0, "--end", help="The last learning rate."),
            steps: int = typer.Option(100, "--steps", min=3, help="Batches, one per rate."),
            out: Optional[Path] = typer.Option(None, "--out", help="The picture (.png or .svg).",
                                               show_default="<name>_lr_find.png"),
            set_: Optional[List[str]] = SetOption):
    """Find a learning rate: a short run at growing rates, the loss plotted, the steepest descent suggested."""
    from yamlnet.lrfind import find_learning_rate, plot

    result = find_learning_rate(file, set_ or (), start=start, end=end, steps=steps)
    picture = plot(result, out or Path(f"{result.name}_lr_find.png"))
    ran = f"{len(result.rates)} batches from {result.rates[0]:.3g} to {result.rates[-1]:.3g}"
    typer.echo(f"{ran}{' (the loss ran away there)' if result.stopped_early else ''}; loss curve: {picture}")
    typer.echo(f"suggested learning rate: {result.suggestion:.3g} — yamlnet train {file} --set {result.override()}")


@app.command("inspect")
@user_errors
def inspect_(run: Path = typer.Argument(..., help="A run directory or a model .npz."),
             inputs: Optional[List[Path]] = typer.Argument(None, help="Image files, folders of images or .npz files."),
             index: Optional[int] = typer.Option(None, "--index", help="Image N of the run's validation part instead."),
             layers: Optional[str] = typer.Option(None, "--layers", help="Only these layers' outputs: a,b,c."),
             class_name: Optional[str] = typer.Option(None, "--class", help="Grad-CAM for this class too."),
             layer: Optional[str] = typer.Option(None, "--layer", help="Grad-CAM at this layer.",
                                                 show_default="the last with a volume output"),
             out: Optional[Path] = typer.Option(None, "--out", help="Folder for the pictures.",
                                                show_default="RUN/inspect"),
             npz: Optional[Path] = typer.Option(None, "--npz", help="Also write the arrays to this .npz.")):
    """Every layer's output for an image, Grad-CAM and saliency, the filters: pictures and arrays."""
    from yamlnet.inspection import inspect

    _say_which_checkpoint(run)
    result = inspect(run, inputs or (), index=index, layers=layers.split(",") if layers else None,
                     class_name=class_name, layer=layer, out=out, npz=npz)
    typer.echo("\n".join(result.lines()))


@app.command()
@user_errors
def evaluate(run: Path = typer.Argument(..., help="A run directory or a model .npz."),
             data: Optional[Path] = typer.Option(None, "--data", help="An .npz with arrays x and y, or a folder "
                                                 "with one sub-folder per class.",
                                                 show_default="the run's validation part"),
             test: bool = typer.Option(False, "--test", help="Use the data set's separate test set."),
             as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")):
    """Loss, accuracy, per-class precision and recall, and the confusion matrix."""
    from yamlnet.evaluate import evaluate as run_evaluation, render_report

    report = run_evaluation(run, data, split="test" if test else "validation")
    typer.echo(json.dumps(report, indent=2) if as_json else render_report(report))
    _say_which_checkpoint(run)


@app.command()
@user_errors
def predict(run: Path = typer.Argument(..., help="A run directory or a model .npz."),
            inputs: List[Path] = typer.Argument(..., help="Images: .npz files (array x), image files, folders."),
            top: Optional[int] = typer.Option(None, "--top", min=1, help="Print the K best classes per image."),
            out: Optional[Path] = typer.Option(None, "--out", help="Write the CSV here instead of stdout.")):
    """Predicted class and class probabilities for each image, as CSV."""
    from yamlnet.evaluate import predict_file

    text = predict_file(run, inputs).to_csv(top)
    _say_which_checkpoint(run)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@app.command()
@user_errors
def export(run: Path = typer.Argument(..., help="A run directory (its best.npz) or a model .npz."),
           out: Optional[Path] = typer.Option(None, "--out", help="The ONNX file to write.",
                                              show_default="<name>.onnx beside the model"),
           opset: int = typer.Option(17, "--opset", help="The ONNX opset (13 to 21).")):
    """The trained model as ONNX: raw images in, probabilities out, normalization inside; for onnxruntime."""
    from yamlnet.export import export as write_onnx

    written, model_file = write_onnx(run, out, opset)
    typer.echo(f"wrote {written}  (from {model_file})")


@app.command("data")
@user_errors
def data_(file: Path = ModelFile,
          out: Optional[Path] = typer.Option(None, "--out", help="Write a grid of sample images to this PNG.",
                                             show_default="<name>_data.png"),
          augmented: bool = typer.Option(False, "--augmented", help="Show the images augmented, as training will."),
          as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON (no picture)."),
          set_: Optional[List[str]] = SetOption):
    """A look at the data: images per class in each part, image size, values before and after
    normalization, and a grid of sample images with their class names."""
    from yamlnet.dataview import describe, grid, render

    facts, config, splits = describe(file, set_ or ())
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    typer.echo(render(facts))
    written = grid(config, splits, out or Path(f"{config['name']}_data.png"), augmented)
    typer.echo(f"wrote {written}")


@app.command()
@user_errors
def benchmark(file: Path = ModelFile,
              batch_size: int = typer.Option(64, "--batch-size", min=1, help="Samples per step."),
              iterations: int = typer.Option(20, "--iterations", min=1, help="Timed training steps."),
              as_json: bool = typer.Option(False, "--json", help="Print the timings as JSON."),
              set_: Optional[List[str]] = SetOption):
    """Forward and backward time of every layer on random data, with each layer's share."""
    from yamlnet.benchmark import render as render_timings, time_layers
    from yamlnet.model import build_model

    result = time_layers(build_model(file, set_ or ()), batch_size, iterations)
    typer.echo(json.dumps(result, indent=2) if as_json else render_timings(result))


@app.command()
@user_errors
def sweep(file: Path = ModelFile,
          sweep_file: Optional[Path] = typer.Option(None, "--sweep", help="Take the sweep from this file."),
          out: Optional[Path] = typer.Option(None, "--out", help="Sweep directory; an existing one is continued.",
                                             show_default="runs/<name>/sweep-<time>/"),
          workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Runs at once.",
                                                 show_default="the number of cores"),
          dask: Optional[str] = typer.Option(None, "--dask", help="Run on this Dask scheduler (tcp://host:port)."),
          set_: Optional[List[str]] = SetOption):
    """Train every combination of the swept values; print them sorted by the sweep's metric."""
    from yamlnet.sweep import failed, render as render_sweep, run_sweep

    def finished(result):
        typer.echo(f"{result['run']}: {result['status']}" + (f" ({result['error']})" if result["error"] else ""))

    result = run_sweep(file, sweep_file, out=out, overrides=set_ or (), workers=workers, dask_address=dask,
                       on_result=finished)
    typer.echo(render_sweep(result))
    if failed(result):
        raise typer.Exit(1)


@app.command()
@user_errors
def compare(run_dirs: List[Path] = typer.Argument(..., help="Run directories."),
            as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON.")):
    """One table of the config keys that differ between runs, and their final and best metrics."""
    from yamlnet.compare import compare as compare_runs, render as render_comparison

    result = compare_runs(run_dirs)
    typer.echo(json.dumps(result, indent=2) if as_json else render_comparison(result))


@app.command("runs")
@user_errors
def runs_(folder: Path = typer.Argument(Path("runs"), help="The folder to look in, and below."),
          sort: Optional[str] = typer.Option(None, "--sort", help="run, model, state, epochs, best, seconds, or a "
                                                                  "dotted config key.", show_default="newest first"),
          filters: Optional[List[str]] = typer.Option(None, "--filter", metavar="KEY=VALUE",
                                                      help="Only runs with this state, model or config value "
                                                           "(repeatable)."),
          as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON."),
          last: bool = typer.Option(False, "--last", help="Print only the newest run's directory.")):
    """Every run below a folder: state, epochs, best metric, time, and the settings that differ."""
    from yamlnet.runlist import list_runs, newest, render as render_runs

    if last:
        typer.echo(str(newest(folder)))
        return
    result = list_runs(folder, sort=sort, filters=filters or ())
    typer.echo(json.dumps(result, indent=2, default=str) if as_json else render_runs(result))


@app.command()
@user_errors
def plot(path: Path = typer.Argument(..., help="A run or sweep directory.")):
    """Draw PNGs into a run directory (learning curves, first-layer filters, confusion matrix) or a
    sweep directory (the metric against each swept key)."""
    from yamlnet.plots import plot as draw_plots

    for written in draw_plots(path):
        typer.echo(f"wrote {written}")


@app.command()
@user_errors
def draw(file: Path = ModelFile,
         out: Optional[Path] = typer.Option(None, "--out", help="The file to write; its extension (.png, .svg, "
                                            ".md or .mmd) sets the format.", show_default="<name>.png"),
         format_: Optional[str] = typer.Option(None, "--format", help="png, svg or mermaid (printed unless --out).",
                                               show_default="from --out, else png"),
         set_: Optional[List[str]] = SetOption):
    """The network as a picture: volumes n_H × n_W × n_C and the layers between them."""
    from yamlnet.draw import draw as draw_network, format_for, mermaid
    from yamlnet.npzio import write_text_atomic
    from yamlnet.plan import plan

    format_ = format_for(format_, out)
    config, layers = plan(file, set_ or ())
    if format_ == "mermaid" and out is None:
        typer.echo(mermaid(config, layers), nl=False)
    elif format_ == "mermaid":
        write_text_atomic(out, mermaid(config, layers))
        typer.echo(f"wrote {out}")
    else:
        written = draw_network(config, layers, out or Path(f"{config['name']}.{format_}"))
        typer.echo(f"wrote {written}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

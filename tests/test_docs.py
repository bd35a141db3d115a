"""The documentation is part of the product: the site's generated reference covers every key of the
schema and every option of the command line, every page is in the navigation, and every command and
Python block on the pages runs (or, where it needs data a page only names, parses) as written."""

import importlib.util
import re
import shlex

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from conftest import ROOT

from yamlnet.cli import app
from yamlnet.config import build_schema
from yamlnet.layers import LAYERS

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
MKDOCS = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def _hook():
    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _hook()


def fenced_blocks(text: str, language: str = "") -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def yamlnet_commands(text: str) -> list[list[str]]:
    """Every ``yamlnet …`` command line in the text's plain code blocks, as argument lists."""
    commands = []
    for block in fenced_blocks(text):
        for line in block.splitlines():
            line = line.removeprefix("$ ").strip()
            if line.startswith("yamlnet "):
                line = re.sub(r"\{(\d),(\d)\}", r"\1", line)  # a shell brace expansion: its first word
                commands.append(shlex.split(line, comments=True)[1:])
    return commands


def check_parses(args: list[str]) -> None:
    """The command exists and takes these arguments and options (without running it)."""
    group = typer.main.get_command(app)
    command = group.commands.get(args[0])
    assert command is not None, f"no command {args[0]!r}: yamlnet {' '.join(args)}"
    try:
        command.make_context(f"yamlnet {args[0]}", args[1:])
    except Exception as error:  # typer may vendor its own click: any parse error fails the page
        raise AssertionError(f"yamlnet {' '.join(args)}: {error}") from None


# -- the generated reference -------------------------------------------------------------------------

def _keys(properties: dict, prefix: str = ""):
    for key, spec in properties.items():
        yield prefix + key
        yield from _keys(spec.get("properties", {}), f"{prefix}{key}.")


def test_the_model_file_reference_names_every_key_of_the_schema():
    schema = build_schema()
    layers = reference.reference("layers")
    for name in schema["$defs"]["layer"]["properties"]["type"]["enum"]:
        assert f"### `{name}`" in layers, name
        section = layers.split(f"### `{name}`", 1)[1].split("### ", 1)[0]
        for key in schema["$defs"][name]["properties"]:
            assert f"`{key}`" in (section if key not in reference.COMMON_LAYER_KEYS else layers), f"{name}.{key}"
    for section in ("data", "training"):
        text = reference.reference(section)
        for key in _keys(schema["$defs"][section]["properties"]):
            assert f"| `{key}` |" in text, f"{section}.{key}"
    assert all(f"| `{key}` |" in reference.reference("top") for key in schema["properties"])
    assert all(f"| `{key}` |" in reference.reference("sweep") for key in schema["$defs"]["sweep"]["properties"])
    for name in schema["$defs"]["data"]["properties"]["dataset"]["enum"]:
        assert f"- `{name}` — " in reference.reference("datasets"), name


def test_a_key_added_to_a_layer_types_hyperparameters_appears_with_no_other_edit(monkeypatch):
    conv = LAYERS["conv2d"]
    monkeypatch.setattr(conv, "hyperparameters", {**conv.hyperparameters, "dilation": {
        "type": "integer", "minimum": 1, "default": 1, "description": "spacing between the kernel's taps"}})
    section = reference.reference("layers").split("### `conv2d`", 1)[1].split("### ", 1)[0]
    assert "| `dilation` | integer ≥ 1 | `1` | spacing between the kernel's taps |" in section


def test_the_reference_shows_types_defaults_ranges_and_enums():
    training = reference.reference("training")
    assert "| `learning_rate` | number > 0 | `0.01` |" in training
    assert "| `shards` | integer in [1, 64] | `2` |" in training
    assert "`sgd`, `momentum`, `adam`" in training
    data = reference.reference("data")
    assert "| `path` | path (from the model file's folder) | required for `npz`, `mnist`, `folder` |" in data
    assert "| `input` | list of 3 integers ≥ 1 | required |" in reference.reference("top")


def test_the_command_line_page_lists_every_option_help_lists():
    page = reference.reference("cli")
    group = typer.main.get_command(app)
    runner = CliRunner()
    for name in group.commands:
        section = page.split(f"## `yamlnet {name}`", 1)[1].split("\n## ", 1)[0]
        help_text = runner.invoke(app, [name, "--help"]).output
        shown = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", help_text.split("Options", 1)[-1]))
        assert shown, name
        for option in shown | set(reference.option_names(group.commands[name])):
            assert f"`{option}" in section or f", {option}" in section or f"{option} " in section, (name, option)


def test_an_unknown_reference_section_is_an_error():
    with pytest.raises(ValueError, match="unknown reference section 'layer'"):
        reference.reference("layer")


# -- the site ----------------------------------------------------------------------------------------

def _nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_page_is_in_the_navigation_and_every_marker_is_known():
    assert sorted(_nav_pages(MKDOCS["nav"])) == sorted(page.name for page in PAGES)
    markers = [marker for page in PAGES for marker in reference.MARKER.findall(page.read_text(encoding="utf-8"))]
    assert {"top", "layers", "data", "training", "sweep", "cli"} <= set(markers)
    for marker in markers:
        assert reference.reference(marker).strip(), marker


@pytest.mark.parametrize("page", [*PAGES, ROOT / "README.md"], ids=lambda page: page.name)
def test_every_command_on_the_page_parses(page):
    commands = yamlnet_commands(page.read_text(encoding="utf-8"))
    for args in commands:
        check_parses(args)


@pytest.mark.parametrize("page", [*PAGES, ROOT / "README.md"], ids=lambda page: page.name)
def test_the_commands_that_need_no_run_run_as_written(page, monkeypatch, tmp_path):
    """summary, validate, draw, models and schema of the repository's models: exit 0."""
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    for args in yamlnet_commands(page.read_text(encoding="utf-8")):
        if args[0] in ("summary", "validate", "models", "schema") or args[0] == "draw" and "--out" not in args:
            result = runner.invoke(app, args)
            assert result.exit_code == 0, (args, result.output)


@pytest.mark.parametrize("page, printed", [("api.md", "run:"), ("inspect.md", "pool2 (2, 5, 5) (2, 28, 28, 6)")])
def test_the_python_on_the_page_runs_as_is(page, printed, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    (block,) = fenced_blocks((DOCS / page).read_text(encoding="utf-8"), "python")
    exec(compile(block, f"docs/{page}", "exec"), {})
    assert printed in capsys.readouterr().out


def test_the_changelog_is_on_the_site():
    assert (DOCS / "changelog.md").read_text(encoding="utf-8").strip() == '--8<-- "CHANGELOG.md"'
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog and re.search(r"^## \[\d+\.\d+\.\d+\] - \d{4}-\d\d-\d\d$", changelog, re.M)


def test_the_onnxruntime_example_runs_on_an_exported_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import numpy as np
    from PIL import Image

    import yamlnet
    (block,) = fenced_blocks((DOCS / "export.md").read_text(encoding="utf-8"), "python")
    run_dir = re.search(r'InferenceSession\("(.*)/simple\.onnx"\)', block).group(1)
    yamlnet.train(str(ROOT / "models" / "simple.yaml"), out=tmp_path / run_dir, overrides=["training.epochs=1"])
    yamlnet.export(tmp_path / run_dir)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "digit.png")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "docs/export.md", "exec"), {})
    assert capsys.readouterr().out.strip().splitlines()[-1] in [str(k) for k in range(10)]

"""The README is part of the product: a newcomer's five minutes — install, main job, tests, a model
file, the layer list, the commands and the API — every command and the Python block run as written."""

import re

from conftest import ROOT
from test_docs import fenced_blocks

from yamlnet.layers import LAYERS

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_it_reads_in_five_minutes():
    assert 150 <= len(README.splitlines()) <= 250


def test_the_two_commands_and_ci_agree():
    blocks = fenced_blocks(README)
    install = "python3 -m venv .venv && . .venv/bin/activate && pip install . && yamlnet train models/simple.yaml"
    test_command = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && python -m pytest -q'
    assert [install + "\n", test_command + "\n"] == blocks[:2]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci  # CI runs the README's test command as it stands


def test_the_layer_list_names_every_built_in_layer_type():
    table = README.split("| type | what |", 1)[1].split("\n\n", 1)[0]
    for name in LAYERS:
        if LAYERS[name].__module__.startswith("yamlnet."):
            assert f"`{name}`" in table, name


def test_the_command_table_lists_every_command():
    from yamlnet.cli import app
    table = README.split("| command | what |", 1)[1].split("\n\n", 1)[0]
    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        assert f"| `yamlnet {name}" in table, name


def test_its_links_lead_somewhere():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).is_file(), target


def test_public_api():
    import yamlnet
    for name in ("build_model", "load_model", "load_config", "train", "evaluate", "predict", "export", "Model",
                 "YamlnetError"):
        assert callable(getattr(yamlnet, name)), name


def test_the_api_example_runs_as_is_twice(monkeypatch, capsys):
    (block,) = fenced_blocks(README, "python")
    monkeypatch.chdir(ROOT)
    for _ in range(2):
        exec(compile(block, "README.md", "exec"), {})
    assert "run:" in capsys.readouterr().out

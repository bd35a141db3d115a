"""The README is part of the product: its reference must name every key the schema knows."""

import re

from conftest import ROOT

from yamlnet.config import build_schema

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_reference_names_every_layer_type_and_key():
    schema = build_schema()
    for name in schema["$defs"]["layer"]["properties"]["type"]["enum"]:
        assert f"`{name}`" in README, name
        for key in schema["$defs"][name]["properties"]:
            assert f"`{key}`" in README, f"{name}.{key}"
    for section in ("data", "training"):
        for key, value in schema["$defs"][section]["properties"].items():
            assert f"`{key}" in README, f"{section}.{key}"
            for sub in value.get("properties", {}):
                assert f"`{key}.{sub}`" in README, f"{section}.{key}.{sub}"
    for key in schema["properties"]:
        assert f"`{key}`" in README
    for key in schema["$defs"]["sweep"]["properties"]:
        assert f"| `{key}` |" in README, f"sweep.{key}"


def test_the_two_commands_and_ci_agree():
    blocks = re.findall(r"```\n(.*?)\n```", README, re.S)
    assert "python3 -m venv .venv && . .venv/bin/activate && pip install . && yamlnet train models/simple.yaml" in blocks
    test_command = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && python -m pytest -q'
    assert test_command in blocks
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci  # CI runs the README's test command as it stands


def test_public_api():
    import yamlnet
    for name in ("build_model", "load_model", "load_config", "train", "evaluate", "predict", "Model", "YamlnetError"):
        assert callable(getattr(yamlnet, name)), name


def test_the_api_example_runs_as_is_twice(monkeypatch, capsys):
    block = re.search(r"## Python API\n\n```python\n(.*?)\n```", README, re.S).group(1)
    monkeypatch.chdir(ROOT)
    for _ in range(2):
        exec(compile(block, "README.md", "exec"), {})
    assert "run:" in capsys.readouterr().out

"""Every malformed file in tests/bad_inputs/ gets exactly its one line on stderr and exit status 2."""

import pytest
import yaml
from conftest import ROOT
from typer.testing import CliRunner

from yamlnet.cli import app

FOLDER = ROOT / "tests" / "bad_inputs"
EXPECTED = yaml.safe_load((FOLDER / "expected.yaml").read_text(encoding="utf-8"))


def test_every_file_has_an_expectation():
    files = {path.name for path in FOLDER.glob("*.yaml")} - {"expected.yaml"}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_file_gives_its_one_line(name, monkeypatch):
    monkeypatch.chdir(FOLDER)
    result = CliRunner().invoke(app, ["validate", name])
    assert result.exit_code == 2
    assert result.output.strip() == EXPECTED[name]
    assert "Traceback" not in result.output

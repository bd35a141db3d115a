"""yamlnet init, built-in models by name, and what the package ships (models, schema, license)."""

import json
import re

import numpy as np
import pytest
from conftest import ROOT
from typer.testing import CliRunner

from yamlnet.cli import app
from yamlnet.config import build_schema, load_config
from yamlnet.config.builtin import builtin_models, builtin_path
from yamlnet.errors import ConfigError
from yamlnet.starter import init


def test_init_writes_a_valid_commented_file_and_the_schema_its_first_line_names(tmp_path):
    written = init(tmp_path / "nets" / "mine.yaml")
    assert [path.name for path in written] == ["mine.yaml", "yamlnet.schema.json"]
    text = written[0].read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=yamlnet.schema.json"
    assert "# one score per class" in text and "name: mine" in text
    assert json.loads(written[1].read_text()) == build_schema()
    assert load_config(written[0])["data"]["dataset"] == "digits"
    with pytest.raises(ConfigError, match="exists already; choose another name, or --force"):
        init(tmp_path / "nets" / "mine.yaml")
    init(tmp_path / "nets" / "mine.yaml", force=True)


def test_init_from_a_builtin_model_and_for_an_npz_file(tmp_path):
    schema = tmp_path / "schemas" / "s.json"
    copy, _ = init(tmp_path / "models" / "res.yaml", from_model="resnet_small", schema=schema)
    assert copy.read_text().splitlines()[0] == "# yaml-language-server: $schema=../schemas/s.json"
    assert load_config(copy)["name"] == "res" and len(load_config(copy)["layers"]) == 21
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((20, 12, 10, 3)), y=np.arange(20) % 4)
    mine, _ = init(tmp_path / "mine.yaml", dataset="npz", data_path=str(tmp_path / "d.npz"))
    config = load_config(mine)
    assert config["input"] == [12, 10, 3] and config["layers"][-2]["units"] == 4
    with pytest.raises(ConfigError, match="no built-in model of that name"):
        init(tmp_path / "x.yaml", from_model="nothing")
    with pytest.raises(ConfigError, match="--dataset npz needs --path"):
        init(tmp_path / "y.yaml", dataset="npz")


def test_a_builtin_model_by_name_when_no_such_file_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert builtin_path("simple") == builtin_path("simple.yaml") == builtin_models()["simple"]
    result = CliRunner().invoke(app, ["summary", "simple"])
    assert result.exit_code == 0 and result.stderr.startswith("simple: the built-in model ")
    (tmp_path / "simple.yaml").write_text("name: mine\ninput: [8, 8, 1]\nlayers:\n  - {type: dense, units: 10}\n")
    assert builtin_path("simple.yaml") is None  # a file in the folder always wins
    result = CliRunner().invoke(app, ["summary", "simple.yaml"])
    assert result.stdout.startswith("Model: mine") and not result.stderr
    assert CliRunner().invoke(app, ["summary", "nothing_like_it"]).exit_code == 2


def test_models_lists_every_builtin_model():
    output = CliRunner().invoke(app, ["models"]).output
    for name in builtin_models():
        assert any(line.startswith(name + " ") for line in output.splitlines()), name
    assert set(builtin_models()) >= {"simple", "lenet", "ng_example", "resnet_small", "inception_small"}


def test_the_package_ships_its_models_schema_and_license():
    project = (ROOT / "pyproject.toml").read_text()
    patterns = re.findall(r'"([^"]+)"', re.search(r'^"yamlnet" = \[(.*)\]$', project, re.M).group(1))
    assert set(patterns) == {"models/*.yaml", "schemas/*.json"}
    for pattern in patterns:
        assert list((ROOT / "yamlnet").glob(pattern)), pattern
    assert 'license = "MIT"' in project and 'license-files = ["LICENSE"]' in project
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "models").resolve() == (ROOT / "yamlnet" / "models").resolve()  # one copy, no drift


def test_schema_out_writes_the_file(tmp_path):
    result = CliRunner().invoke(app, ["schema", "--out", str(tmp_path / "s.json")])
    assert result.exit_code == 0 and json.loads((tmp_path / "s.json").read_text()) == build_schema()


def test_init_on_a_folder_of_mixed_sizes_and_a_damaged_image(tmp_path, monkeypatch):
    from data.test_folder import damage, make_folder, picture
    root = make_folder(tmp_path / "pets", counts=(6, 6, 6))
    for i, size in enumerate([(40, 30), (50, 70), (90, 90)]):
        picture(0, size, seed=i).save(root / "bar" / f"big{i}.png")
    bad = damage(root, 1)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["init", "models/pets.yaml", "--dataset", "folder", "--path", "pets"])
    assert result.exit_code == 2 and f"pets/bar/{bad[0].name}: cannot be read" in result.output
    assert "--skip-bad" in result.output and len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(app, ["init", "models/pets.yaml", "--dataset", "folder", "--path", "pets",
                                      "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert "wrote models/pets.yaml" in result.output and "skipped 1 unreadable image" in result.output
    text = (tmp_path / "models" / "pets.yaml").read_text()
    assert "for pets (your images" in text and "path: ../pets" in text and "skip_bad: true" in text
    config = load_config(tmp_path / "models" / "pets.yaml")
    n_h, n_w, _ = config["input"]
    assert n_h == n_w and n_h % 4 == 0 and n_h <= 64 and "differ in size" in text
    assert config["data"]["path"] == str(tmp_path / "pets")  # relative to the model file: found

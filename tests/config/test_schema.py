import json

import pytest
from conftest import ROOT

import yamlnet
from yamlnet.config import build_schema, load_config
from yamlnet.errors import ConfigError

MODELS = sorted((ROOT / "models").glob("*.yaml"))


def test_committed_schema_equals_generated():
    committed = json.loads((ROOT / "schemas" / "yamlnet.schema.json").read_text(encoding="utf-8"))
    assert committed == build_schema(), "run: yamlnet schema > schemas/yamlnet.schema.json"


def test_schema_is_valid_draft_2020_12():
    import jsonschema
    jsonschema.Draft202012Validator.check_schema(build_schema())


def test_every_registered_layer_type_is_in_the_schema():
    from yamlnet.layers import LAYERS
    schema = build_schema()
    assert schema["$defs"]["layer"]["properties"]["type"]["enum"] == list(LAYERS)
    for name in LAYERS:
        assert schema["$defs"][name]["additionalProperties"] is False


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_example_models_are_valid_and_point_editors_at_the_schema(path):
    assert path.read_text(encoding="utf-8").startswith("# yaml-language-server: $schema=../schemas/yamlnet.schema.json")
    load_config(path)


def test_defaults_are_filled():
    config = load_config({"input": [8, 8, 1], "layers": [{"type": "conv2d", "filters": 2, "size": 3},
                                                         {"type": "maxpool2d", "size": 2},
                                                         {"type": "dense", "units": 3}]})
    conv, pool, dense = config["layers"]
    assert conv == {"type": "conv2d", "filters": 2, "size": 3, "stride": 1, "padding": 0,
                    "activation": "linear", "groups": 1, "dilation": 1, "name": "conv2d1"}
    assert pool["stride"] == 2 and pool["name"] == "maxpool2d1"
    assert dense["activation"] == "linear"
    assert config["name"] == "model"
    assert config["data"]["dataset"] == "digits" and config["training"]["optimizer"] == "sgd"
    schedule = config["training"]["lr_schedule"]
    assert {key: schedule[key] for key in ("type", "step_size", "gamma", "warmup_epochs", "patience")} == \
        {"type": "constant", "step_size": 10, "gamma": 0.1, "warmup_epochs": 0, "patience": 10}
    assert "path" not in config["data"]  # defaults of other data sets' keys are not kept


BASE = "input: [8, 8, 1]\nlayers:\n  - {name: conv1, type: conv2d, filters: 4, size: 3}\n"


@pytest.mark.parametrize("text, expected", [
    (BASE + "  - {name: conv2, type: conv2d, filters: 4, size: 3, stride: 0}\n",
     "m.yaml:4:62: layers[1] (conv2).stride: must be at least 1, got 0"),
    (BASE + "  - {type: conv2d, filters: 4, sise: 3}\n",
     "m.yaml:4:32: layers[1] (conv2d2).sise: unknown key 'sise'; did you mean 'size'?"),
    (BASE + "  - {type: conv2d, filters: four, size: 3}\n",
     "m.yaml:4:29: layers[1] (conv2d2).filters: must be a whole number, got 'four'"),
    (BASE + "  - {type: conv2d, filters: 2.5, size: 3}\n", "must be a whole number, got 2.5"),
    (BASE + "  - {type: conv2d, filters: true, size: 3}\n", "must be a whole number, got true"),
    (BASE + "  - {type: conv3d}\n", "layers[1] (conv3d1).type: must be one of"),
    (BASE + "  - {type: conv2d, size: 3}\n", "m.yaml:4:5: layers[1] (conv2d2): missing required key 'filters'"),
    (BASE + "  - {type: conv2d, filters: 2, size: 3, padding: full}\n",
     "padding: must be a whole number ≥ 0, 'valid' or 'same', got 'full'"),
    (BASE + "  - {name: conv1, type: dense, units: 3}\n",
     "m.yaml:4:12: layers[1] (conv1).name: name 'conv1' is already used by layers[0]"),
    (BASE + "trainig: {epochs: 3}\n", "m.yaml:4:1: trainig: unknown key 'trainig'; did you mean 'training'?"),
    (BASE + "training: {learning_rate: 0}\n", "training.learning_rate: must be greater than 0, got 0"),
    (BASE + "training: {optimizer: adamw}\n", "must be one of sgd, momentum, adam, got 'adamw'; did you mean 'adam'?"),
    (BASE + "data: {dataset: npz}\n", "data: missing required key 'path'"),
    (BASE + "data: {dataset: digits, x_key: a}\n", "data.x_key: is not used by the digits data set (only by npz)"),
    (BASE + "data: {validation_split: 1.5}\n", "data.validation_split: must be less than 1, got 1.5"),
    ("input: [8, 8]\nlayers: [{type: flatten}]\n", "m.yaml:1:8: input: must be a list of 3, got a list of 2"),
    ("input: [8, 8, 1]\nlayers: []\n", "layers: must have at least 1 items, got 0"),
    ("- 1\n- 2\n", "m.yaml:1:1: a model file must be a mapping"),
    ("layers: [{type: flatten}]\n", "missing required key 'input'"),
])
def test_each_error_class_is_one_located_line(tmp_path, text, expected):
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        yamlnet.build_model(path)
    message = str(info.value).replace(str(tmp_path) + "/", "")
    assert expected in message and "\n" not in message


@pytest.mark.parametrize("override, expected", [
    ("epochs=5", "unknown key 'epochs'; did you mean 'training.epochs'?"),
    ("validation_split=0.1", "did you mean 'data.validation_split'?"),
    ("layers[0].type=fc", "got 'fc'; did you mean 'dense'?"),
    ("layers[0].type=fully_connected", "did you mean 'dense'?"),
    ("layers[0].type=Conv2D", "did you mean 'conv2d'?"),
    ("layers[0].activation=ReLU", "got 'ReLU'; did you mean 'relu'?"),
    ("data.shuffle=yes", "must be true or false, got 'yes'; write true or false (YAML 1.2 reads yes"),
    ("training.learning_rate=3e-4", None),
    ("training.eps=1e-7", None),
])
def test_suggestions_point_the_right_way(override, expected):
    model = {"input": [8, 8, 1], "layers": [{"type": "conv2d", "filters": 2, "size": 3, "activation": "relu"},
                                            {"type": "dense", "units": 10}]}
    if expected is None:
        assert load_config(model, [override])
        return
    with pytest.raises(ConfigError) as info:
        load_config(model, [override])
    assert expected in str(info.value)

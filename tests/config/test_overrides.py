import pytest

from yamlnet.config import load_config
from yamlnet.config.overrides import parse_key
from yamlnet.errors import ConfigError

MODEL = """
name: m
input: [8, 8, 1]
layers:
  - {name: conv1, type: conv2d, filters: 4, size: 3}
  - {name: conv2, type: conv2d, filters: 4, size: 3}
  - {name: fc, type: dense, units: 10}
training: {learning_rate: 0.1}
"""


def test_parse_key():
    assert parse_key("layers[0].size") == ["layers", 0, "size"]
    assert parse_key("training.lr_schedule.type") == ["training", "lr_schedule", "type"]
    for bad in ("", ".a", "a..b", "a[x]", "a]"):
        with pytest.raises(ValueError):
            parse_key(bad)


def test_overrides_by_dotted_key_name_and_index():
    config = load_config(MODEL, ["training.learning_rate=0.05", "layers.conv1.filters=16", "layers[1].size=5",
                                 "data.dataset=shapes", "training.lr_schedule={type: cosine}",
                                 "layers.fc.activation=relu"])
    assert config["training"]["learning_rate"] == 0.05
    assert config["layers"][0]["filters"] == 16 and config["layers"][1]["size"] == 5
    assert config["data"]["dataset"] == "shapes" and config["data"]["n_samples"] == 3000
    assert config["training"]["lr_schedule"]["type"] == "cosine"
    assert config["layers"][2]["activation"] == "relu"


@pytest.mark.parametrize("override, message", [
    ("layers.conv9.filters=16", "--set layers.conv9.filters=16: no layer named conv9; layers are conv1, conv2, fc"),
    ("layers.conv1.stride=0", "--set layers.conv1.stride=0: layers[0] (conv1).stride: must be at least 1, got 0"),
    ("layers[5].size=2", "there is no layers[5]; the file has 3 layers"),
    ("training.learning_rate", "expected KEY=VALUE"),
    ("training.learning_rate=[1", "the value is not valid YAML"),
    ("training.learning_rat=1", "--set training.learning_rat=1: training.learning_rat: unknown key 'learning_rat'; "
                                "did you mean 'learning_rate'?"),
    ("training.learning_rate=fast", "must be a number, got 'fast'"),
    ("layers.conv1=3", "name a key of the layer"),
])
def test_bad_overrides_name_themselves(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(MODEL, [override])
    assert message in str(info.value)

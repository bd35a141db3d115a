"""``yamlnet compare``: the dotted keys that differ between runs, beside their metrics."""

import pytest
import yaml

from yamlnet import runs
from yamlnet.compare import compare, render
from yamlnet.config.overrides import differences, flatten
from yamlnet.errors import DataError


def test_flatten_spells_keys_as_set_does():
    config = {"training": {"learning_rate": 0.1}, "layers": [{"name": "conv1", "type": "conv2d", "filters": 8}]}
    assert flatten(config) == {"training.learning_rate": 0.1, "layers.conv1.type": "conv2d",
                               "layers.conv1.filters": 8}
    changed = {**config, "training": {"learning_rate": 0.2}}
    assert differences(config, changed) == {"training.learning_rate"}


def run_dir(path, learning_rate, records):
    config = {"input": [8, 8, 1], "layers": [{"name": "fc", "type": "dense", "units": 10}],
              "training": {"learning_rate": learning_rate}}
    path.mkdir()
    (path / runs.CONFIG).write_text(yaml.safe_dump(config))
    for record in records:
        runs.append_metrics(path, record)
    return path


def test_compare_lists_only_what_differs(tmp_path):
    a = run_dir(tmp_path / "a", 0.1, [{"epoch": 1, "loss": 1.0, "val_accuracy": 0.5, "val_loss": 1.2}])
    b = run_dir(tmp_path / "b", 0.2, [{"epoch": 1, "loss": 0.8, "val_accuracy": 0.6, "val_loss": 1.0},
                                      {"epoch": 2, "loss": 0.7, "val_accuracy": 0.55, "val_loss": 1.1}])
    result = compare([a, b])
    assert result["keys"] == ["training.learning_rate"]
    assert [row["best_val_accuracy"] for row in result["runs"]] == [0.5, 0.6]
    assert [row["best_val_loss"] for row in result["runs"]] == [1.2, 1.0]
    text = render(result)
    assert "training.learning_rate" in text.splitlines()[0] and "0.6000" in text
    assert "identical" in render(compare([a, a]))
    with pytest.raises(DataError, match="is not a run directory"):
        compare([tmp_path])

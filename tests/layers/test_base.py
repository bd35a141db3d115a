"""The layer contract, checked for every registered type (so a new type is covered when it registers)."""

import pytest
import yaml
from conftest import minimal_layer
from typer.testing import CliRunner

from yamlnet.cli import app
from yamlnet.layers import LAYERS

VOLUME_ONLY = sorted(name for name, cls in LAYERS.items() if cls.needs_volume)


def test_the_volume_only_types_are_the_sliding_window_ones():
    assert {"conv2d", "maxpool2d", "avgpool2d"} <= set(VOLUME_ONLY)


@pytest.mark.parametrize("type_name", VOLUME_ONLY)
@pytest.mark.parametrize("before", ["flatten", "dense"])
def test_a_volume_layer_after_a_vector_is_one_located_line(type_name, before, tmp_path):
    first = {"type": "flatten"} if before == "flatten" else {"type": "dense", "units": 12}
    model = {"input": [8, 8, 1], "layers": [first, minimal_layer(type_name), {"type": "dense", "units": 10},
                                             {"type": "softmax"}]}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(model, default_flow_style=None, sort_keys=False))
    line = next(number for number, text in enumerate(path.read_text().splitlines(), 1) if type_name in text)
    for command in ("validate", "summary"):
        result = CliRunner().invoke(app, [command, str(path)])
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"{path}:{line}:"), result.output
        assert f".type: {type_name} needs a volume n_H × n_W × n_C as input, got a vector of" in result.output
        assert result.output.count("\n") == 1 and "Traceback" not in result.output

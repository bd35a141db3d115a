import pytest

from yamlnet.config.loader import describe_path, dump_yaml, load_document, parse_yaml
from yamlnet.errors import ConfigError


def test_marks_point_at_keys_and_values():
    document = parse_yaml("name: x\nlayers:\n  - {type: conv2d, size: 3}\n", "f.yaml")
    assert document.marks[("layers", 0, "size")] == (3, 26)
    assert document.key_marks[("layers", 0, "size")] == (3, 20)


@pytest.mark.parametrize("text, expected", [
    ("a: 1\na: 2\n", "f.yaml:2:1: a: key 'a' is given twice, on line 1 and line 2"),
    ("a: !!python/object/apply:os.system [echo hi]\n", "not allowed"),
    ("a: !!python/name:os.system\n", "yamlnet reads plain YAML only"),
    ("a: [1\n", "f.yaml:1:4: YAML syntax error: the [ opened here is never closed with ]"),
    ("a: {b: 1 c: 2}\n", "f.yaml:1:"),
    ("a:\n\t- 1\n", "does not allow tabs"),
    ("", "the file is empty"),
])
def test_bad_yaml_is_one_located_line(text, expected):
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "f.yaml")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_python_tags_are_never_executed(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(ConfigError):
        parse_yaml(f"a: !!python/object/apply:os.system ['touch {marker}']\n", "f.yaml")
    assert not marker.exists()


def test_files_built_to_blow_up_are_refused_by_counting(tmp_path):
    # The guards count (bytes, nesting levels, values) rather than time: each case is refused at
    # its limit, which the error's position shows, so no test depends on the machine's speed.
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(ConfigError, match="more than 100,000 values .an alias bomb"):
        parse_yaml("\n".join(lines) + "\n", "bomb.yaml")
    with pytest.raises(ConfigError) as nested:
        parse_yaml("a: " + "[" * 100_000 + "]" * 100_000 + "\n", "deep.yaml")
    # refused while composing, at level 65 (the mapping, then the 64th bracket: column 3 + 64), not after
    assert str(nested.value) == "deep.yaml:1:67: the YAML is nested more than 64 levels deep"
    huge = tmp_path / "huge.yaml"
    huge.write_text("a: [" + "1, " * 400_000 + "1]\n")
    with pytest.raises(ConfigError, match="a model file may have at most 1,048,576"):
        load_document(huge)


@pytest.mark.parametrize("text, expected", [
    ("a: 3e-4", 3e-4), ("a: 1E3", 1000.0), ("a: -1.5e-7", -1.5e-7), ("a: .5", 0.5), ("a: 010", 10),
    ("a: 0x1F", 31), ("a: 0o17", 15), ("a: yes", "yes"), ("a: off", "off"), ("a: True", True),
    ("a: 2026-11-27", "2026-11-27"), ("a: ~", None), ("a: .inf", float("inf")),
])
def test_scalars_are_read_as_yaml_1_2_reads_them(text, expected):
    assert parse_yaml(text, None).data == {"a": expected}


def test_dumped_text_reads_back_the_same():
    data = {"name": "1e3", "flag": "yes", "rate": 3e-4, "none": None, "on": True}
    assert parse_yaml(dump_yaml(data), None).data == data


def test_missing_file_and_sources():
    with pytest.raises(ConfigError, match="no such file"):
        load_document("nowhere.yaml")
    assert load_document("a: 1\n").data == {"a": 1}
    assert load_document({"a": (1, 2)}).data == {"a": [1, 2]}


def test_describe_path_names_the_layer():
    data = {"layers": [{"type": "conv2d"}, {"type": "conv2d", "name": "c"}]}
    assert describe_path(("layers", 0, "stride"), data) == "layers[0] (conv2d1).stride"
    assert describe_path(("layers", 1), data) == "layers[1] (c)"

from conftest import ROOT
from typer.testing import CliRunner

from yamlnet.cli import app

NG = str(ROOT / "models" / "ng_example.yaml")


def test_mermaid_follows_the_course_notes_chain():
    result = CliRunner().invoke(app, ["draw", NG, "--format", "mermaid"])
    lines = result.output.splitlines()
    assert lines[0] == "graph LR"
    assert lines[1].startswith('N0["X-input<br/>39 × 39 × 3"] --> |"conv1 f=3 s=1 p=0 + relu"| N1["Layer 1<br/>37 × 37 × 10"]')
    assert "17 × 17 × 20" in lines[2] and "7 × 7 × 40" in lines[3]
    assert lines[-1].endswith('N6["Prediction<br/>10"]')


def test_png_and_svg(tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["draw", NG, "--out", str(tmp_path / "n.png")]).exit_code == 0
    assert (tmp_path / "n.png").read_bytes()[:4] == b"\x89PNG"
    assert runner.invoke(app, ["draw", NG, "--format", "svg", "--out", str(tmp_path / "n.svg")]).exit_code == 0
    assert "<svg" in (tmp_path / "n.svg").read_text()
    result = runner.invoke(app, ["draw", NG, "--format", "gif"])
    assert result.exit_code == 2 and "png, svg or mermaid" in result.output


def test_the_format_follows_out(tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["draw", NG, "--out", str(tmp_path / "n.svg")]).exit_code == 0
    assert "<svg" in (tmp_path / "n.svg").read_text()
    assert runner.invoke(app, ["draw", NG, "--format", "mermaid", "--out", str(tmp_path / "n.md")]).exit_code == 0
    assert (tmp_path / "n.md").read_text().startswith("graph LR")
    for bad, message in [(["--out", str(tmp_path / "n.jpg")], "not .jpg"),
                         (["--format", "png", "--out", str(tmp_path / "n.svg")], "does not match")]:
        result = runner.invoke(app, ["draw", NG, *bad])
        assert result.exit_code == 2 and message in result.output
        assert not (tmp_path / "n.jpg").exists()


def test_long_networks_wrap_so_that_text_stays_legible(tmp_path):
    import struct
    out = tmp_path / "lenet.png"
    assert CliRunner().invoke(app, ["draw", str(ROOT / "models" / "lenet.yaml"), "--out", str(out)]).exit_code == 0
    width, height = struct.unpack(">II", out.read_bytes()[16:24])
    assert width <= 1700 and height < width  # two rows of five, at 120 dpi: 8-point text at its size


def test_a_graph_is_drawn_with_its_branches_and_joins(tmp_path):
    inception = str(ROOT / "models" / "inception_small.yaml")
    result = CliRunner().invoke(app, ["draw", inception, "--format", "mermaid"])
    lines = result.output.splitlines()
    assert lines[0] == "graph TD"
    nodes = {line.split("[")[0]: line for line in lines if "[" in line}
    block = next(name for name, line in nodes.items() if "block (concat)<br/>+ block_bn<br/>16 × 16 × 32" in line)
    joined = [line.split(" --> ")[0] for line in lines if line.endswith(f" --> {block}")]
    assert sorted(nodes[name].split('"')[1].split()[0] for name in joined) == ["a_1x1", "b_3x3", "c_1x1"]
    for name in ("resnet_small", "inception_small"):
        out = tmp_path / f"{name}.png"
        assert CliRunner().invoke(app, ["draw", str(ROOT / "models" / f"{name}.yaml"), "--out", str(out)]).exit_code == 0
        assert out.read_bytes()[:4] == b"\x89PNG"

"""yamlnet inspect: every layer's output, Grad-CAM and saliency, from the API and the command line."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import yamlnet
from yamlnet.cli import app
from yamlnet.inspection import activations, grad_cam


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect") / "run"
    yamlnet.train("ng_example", out=out, overrides=["data.n_samples=200", "training.epochs=1",
                                                   "input=[20, 20, 3]", "layers.conv3.size=3"])
    return out


def test_activations_are_each_layers_inference_output(rng):
    model = yamlnet.build_model("resnet_small")
    x = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
    found = activations(model, x, normalized=True)
    assert list(found) == [layer.name for layer in model.layers]
    assert all(found[layer.name].shape == (2, *layer.output_shape) for layer in model.layers)
    np.testing.assert_allclose(found[model.layers[-1].name], model.forward(x), rtol=1e-5, atol=1e-6)
    assert list(activations(model, x, ["stem", "fc"], normalized=True)) == ["stem", "fc"]


def test_grad_cam_for_the_predicted_class_and_for_another(rng):
    model = yamlnet.build_model("lenet", ["data.dataset=shapes"])
    x = rng.standard_normal((3, 28, 28, 1)).astype(np.float32)
    predicted = grad_cam(model, x, normalized=True)
    assert predicted.layer == "pool2" and predicted.maps.shape == (3, 5, 5) and np.all(predicted.maps >= 0)
    np.testing.assert_array_equal(predicted.classes, model.forward(x).argmax(1))
    assert predicted.saliency.shape == x.shape and np.abs(predicted.saliency).max() > 0
    other = grad_cam(model, x, "3", "conv1", normalized=True)  # (a built model's classes: 0, 1, …)
    assert other.maps.shape == (3, 28, 28) and np.all(other.classes == 3)
    assert [layer.needs_input_grad for layer in model.layers][0] is False  # as it was


def test_the_command_writes_pictures_and_the_arrays(run_dir, tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    result = CliRunner().invoke(app, ["inspect", str(run_dir), str(tmp_path / "a.png"), "--npz",
                                      str(tmp_path / "a.npz"), "--class", "circle", "--out", str(tmp_path / "pics")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("Grad-CAM at conv3; pictures: ")
    pictures = {path.relative_to(tmp_path / "pics").as_posix() for path in (tmp_path / "pics").rglob("*.png")}
    assert {"000-a/overview.png", "000-a/conv1.png", "000-a/fc.png", "filters/conv1.png",
            "filters/conv3.png"} <= pictures
    with np.load(tmp_path / "a.npz", allow_pickle=False) as arrays:
        assert {"activations/conv1", "activations/prediction", "grad_cam/circle", "saliency", "predicted", "classes",
                "files"} <= set(arrays.files)
        assert arrays["activations/conv1"].shape[0] == 1 and arrays["grad_cam/circle"].ndim == 3
        assert str(arrays["files"][0]).endswith("a.png")


def test_an_image_of_the_validation_part(run_dir, tmp_path):
    result = CliRunner().invoke(app, ["inspect", str(run_dir), "--index", "2", "--layers", "conv1,conv2"])
    assert result.exit_code == 0, result.output
    assert any(line.startswith("validation[2]: ") for line in result.output.splitlines())
    assert sorted(path.name for path in (run_dir / "inspect" / "000-validation_2_").iterdir()) == [
        "conv1.png", "conv2.png", "overview.png"]


@pytest.mark.parametrize("arguments, message", [
    (["--class", "circel"], "--class: 'circel' is not a class of the model; did you mean 'circle'?"),
    (["--layer", "fc"], "--layer: fc is not a volume; Grad-CAM looks at a layer with a volume output before the logits"),
    (["--layers", "conv9"], "--layers: no layer named conv9"),
    (["--index", "999"], "--index 999: the run's validation part has 40 images (0..39)"),
])
def test_mistakes_are_one_line(run_dir, arguments, message):
    result = CliRunner().invoke(app, ["inspect", str(run_dir), *(["--index", "0"] if "--index" not in arguments
                                                                  else []), *arguments])
    assert result.exit_code == 2
    assert message in result.output.strip().splitlines()[-1]

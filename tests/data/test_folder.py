"""folder: a user's own images, one sub-folder per class; predict on image files and folders."""

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from yamlnet.cli import app
from yamlnet.config import load_config
from yamlnet.data import load_data
from yamlnet.train import train


def picture(kind: int, size=(12, 12), rgb=True, seed=0) -> Image.Image:
    """A figure of class ``kind``: 0 a vertical bar, 1 a horizontal bar, 2 a square, over noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    pixels = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
    colour = rng.integers(150, 256, 3)
    r, c = rng.integers(1, h // 3), rng.integers(1, w // 3)
    if kind == 0:
        pixels[r:r + h // 2, c + 2:c + 4] = colour
    elif kind == 1:
        pixels[r + 2:r + 4, c:c + w // 2] = colour
    else:
        pixels[r:r + h // 2, c:c + w // 2] = colour
    image = Image.fromarray(pixels)
    return image if rgb else image.convert("L")


def make_folder(root, counts=(30, 30, 30), names=("bar", "line", "square")):
    for kind, (name, count) in enumerate(zip(names, counts)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            suffix = (".png", ".jpg", ".bmp")[i % 3]
            size = (12, 12) if i % 4 else (16, 14)  # some of another size: resized
            picture(kind, size, rgb=i % 5 != 0, seed=kind * 1000 + i).save(root / name / f"img{i}{suffix}")
    (root / names[0] / ".DS_Store").write_bytes(b"\0\1junk")
    (root / names[0] / "README.txt").write_text("not an image")
    return root


def config_for(root, **data):
    return load_config({"name": "f", "input": [12, 12, 3], "layers": [
        {"type": "conv2d", "filters": 6, "size": 3, "padding": "same", "activation": "relu"},
        {"type": "maxpool2d", "size": 2}, {"type": "dense", "units": 3}, {"type": "softmax"}],
        "data": {"dataset": "folder", "path": str(root), **data},
        "training": {"epochs": 12, "batch_size": 16, "learning_rate": 0.02, "optimizer": "momentum"}})


def test_a_folder_of_class_folders_is_a_data_set(tmp_path):
    root = make_folder(tmp_path / "images")
    splits = load_data(config_for(root), 3)
    assert splits.classes == ["bar", "line", "square"] and len(splits.y) == 90
    assert splits.x.shape == (90, 12, 12, 3) and np.bincount(splits.y).tolist() == [30, 30, 30]
    grey = load_data(load_config({**config_for(root), "input": [12, 12, 1]}), 3)
    assert grey.x.shape == (90, 12, 12, 1)


def test_it_trains_and_predict_names_files_and_classes(tmp_path):
    root = make_folder(tmp_path / "images")
    result = train(config_for(root), out=tmp_path / "run")
    assert max(record["val_accuracy"] for record in result.metrics) >= 0.9
    new = tmp_path / "new"
    new.mkdir()
    for kind in range(3):
        picture(kind, seed=7000 + kind).save(new / f"x{kind}.png")
    output = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), str(new), str(new / "x1.png")]).stdout
    lines = output.splitlines()
    assert lines[0] == "file,predicted,class,bar,line,square" and len(lines) == 5
    assert [line.split(",")[2] for line in lines[1:]] == ["bar", "line", "square", "line"]
    top = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), str(new / "x2.png"), "--top", "2"]).stdout
    assert top.splitlines()[0] == "file,rank,class,probability" and top.splitlines()[1].split(",")[2] == "square"
    report = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run")]).stdout
    assert "square" in report and "bar" in report
    bad = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), str(root / "bar" / "README.txt")])
    assert bad.exit_code == 2 and "is neither an .npz nor an image" in bad.output


@pytest.mark.parametrize("damage, message", [
    ("corrupt", "cannot be read as an image"),
    ("empty class", "class folder 'empty' holds no images"),
    ("no classes", "holds no class folders"),
    ("missing", "no such folder"),
    ("test class", "has class folder 'extra', which the training folder lacks"),
    ("size", "img0.png: is 14 × 16 (width × height) but the model takes 12 × 12; data.resize is none"),
])
def test_bad_folders_are_one_clear_line_before_training(tmp_path, damage, message):
    root = make_folder(tmp_path / "images")
    data = {}
    if damage == "corrupt":
        (root / "line" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    elif damage == "empty class":
        (root / "empty").mkdir()
    elif damage == "no classes":
        root = tmp_path / "flat"
        root.mkdir()
        picture(0).save(root / "a.png")
    elif damage == "missing":
        root = tmp_path / "nothing"
    elif damage == "test class":
        test = make_folder(tmp_path / "test", (2, 2, 2), ("bar", "extra", "line"))
        data["test_path"] = str(test)
    elif damage == "size":
        data["resize"] = "none"
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(config_for(root, **data)))
    result = CliRunner().invoke(app, ["train", str(path), "--quiet", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"{path}:")  # located at the data key
    assert not (tmp_path / "run").exists()


def test_class_names_from_the_file_or_the_data(tmp_path):
    config = load_config({"input": [8, 8, 1], "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}],
                          "data": {"classes": [f"digit {k}" for k in range(10)]}})
    assert load_data(config, 10).classes[3] == "digit 3"
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((20, 4, 4)), y=np.arange(20) % 2, classes=np.array(["no", "yes"]))
    config = load_config({"input": [4, 4, 1], "layers": [{"type": "flatten"}, {"type": "dense", "units": 2}],
                          "data": {"dataset": "npz", "path": str(tmp_path / "d.npz")}})
    assert load_data(config, 2).classes == ["no", "yes"]
    from yamlnet.data.shapes import CLASSES
    config = load_config({"input": [8, 8, 1], "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}],
                          "data": {"dataset": "shapes", "n_samples": 20}})
    assert load_data(config, 10).classes == list(CLASSES)


def test_a_class_list_that_does_not_fit_the_outputs_is_refused_by_validate(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("input: [8, 8, 1]\nlayers:\n  - {type: dense, units: 10}\ndata:\n  classes: [a, b]\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "data.classes: names 2 classes but the model has 10 outputs" in result.output


def test_init_for_a_folder_reads_its_size_and_classes(tmp_path):
    from yamlnet.starter import init
    root = make_folder(tmp_path / "images", (3, 3, 3))
    written, _ = init(tmp_path / "mine.yaml", dataset="folder", data_path=str(root))
    config = load_config(written)
    assert config["input"] == [12, 12, 3] and config["layers"][-2]["units"] == 3
    assert config["data"]["path"] == str(root)


def test_the_memory_estimate_counts_the_decoded_images(tmp_path):
    from yamlnet.plan import make_layers
    from yamlnet.memory import training_memory
    root = make_folder(tmp_path / "images", (4, 5, 6))
    config = config_for(root)
    size, what = training_memory(config, make_layers(config))[-1]
    assert what == "15 images held in memory" and size == 15 * 12 * 12 * 3 * 4


def test_a_folder_model_with_other_than_1_or_3_channels_is_refused_by_validate(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(f"input: [8, 8, 2]\nlayers:\n  - {{type: dense, units: 3}}\n"
                    f"data:\n  dataset: folder\n  path: {tmp_path}\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "input: images are read as grey (n_C = 1) or RGB (n_C = 3), not 2" in result.output


def damage(root, count=2):
    """Cut ``count`` images of ``root``'s first class short, as a failed copy leaves them."""
    files = sorted((root / "bar").glob("*.png"))[:count]
    for path in files:
        path.write_bytes(path.read_bytes()[:40])
    return files


def test_an_unreadable_image_is_refused_by_name_or_skipped_with_one_warning(tmp_path):
    import warnings

    from yamlnet.data.folder import DataWarning
    from yamlnet.errors import DataError
    root = make_folder(tmp_path / "images", counts=(10, 10, 10))
    bad = damage(root, 4)  # (the first class's four PNGs)
    with pytest.raises(DataError) as info:
        load_data(config_for(root), 3)
    assert info.value.file == str(bad[0]) and "data.skip_bad: true skips unreadable images" in info.value.message
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = load_data(config_for(root, skip_bad=True), 3)
    assert len(splits.y) == 26 and np.bincount(splits.y).tolist() == [6, 10, 10]
    (warning,) = [w for w in caught if issubclass(w.category, DataWarning)]
    assert "skipped 4 unreadable images (data.skip_bad)" in str(warning.message) and str(bad[0]) in str(warning.message)
    assert str(warning.message).endswith(", …")  # the first three named


def test_train_with_skip_bad_says_so_in_one_line(tmp_path):
    import subprocess
    import sys
    root = make_folder(tmp_path / "images", counts=(10, 10, 10))
    damage(root, 1)
    model = tmp_path / "m.yaml"
    config = config_for(root, skip_bad=True)
    config["training"]["epochs"] = 1
    model.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "yamlnet", "train", str(model), "--out", str(tmp_path / "run"),
                             "--quiet"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "skipped 1 unreadable image (data.skip_bad)" in warnings[0]


@pytest.mark.parametrize("resample", ["bilinear", "nearest"])
def test_fit_letterboxes_and_crop_cuts_the_middle_keeping_the_aspect_ratio(tmp_path, resample):
    from PIL import Image
    from yamlnet.data.folder import Resize, read_image
    pixels = np.random.default_rng(0).integers(0, 256, (20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    method = Image.Resampling.BILINEAR if resample == "bilinear" else Image.Resampling.NEAREST
    fit = read_image(tmp_path / "wide.png", (10, 10, 3), Resize("fit", resample))
    expected = np.asarray(Image.fromarray(pixels).resize((10, 5), method), dtype=np.float32)
    assert np.array_equal(fit[2:7], expected) and not fit[:2].any() and not fit[7:].any()  # black bands
    crop = read_image(tmp_path / "wide.png", (10, 10, 3), Resize("crop", resample))
    assert np.array_equal(crop, np.asarray(Image.fromarray(pixels).resize((20, 10), method), np.float32)[:, 5:15])
    stretch = read_image(tmp_path / "wide.png", (10, 10, 3), Resize.of({"resize": resample}))  # the older spelling
    assert np.array_equal(stretch, np.asarray(Image.fromarray(pixels).resize((10, 10), method), np.float32))
    assert Resize.of({"resize": "fit", "resample": resample}) == Resize("fit", resample)

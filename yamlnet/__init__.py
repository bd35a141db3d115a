"""yamlnet: small convolutional networks described in one YAML file, in NumPy.

    model = yamlnet.build_model("models/simple.yaml")
    probabilities = model.forward(x)            # x: (N, n_H, n_W, n_C)
    loss = model.loss_and_grad(x, y)            # fills every layer's .grads
"""

from yamlnet.errors import (ConfigError, DataError, ShapeError, TrainingError, YamlnetError, YamlnetWarning,
                            show_warnings_in_one_line)

show_warnings_in_one_line()  # (before the layer types of installed packages load, and may warn)

from yamlnet.config import load_config  # noqa: E402
from yamlnet.model import Model, build_model, load_model  # noqa: E402
from yamlnet.train import TrainResult, train  # noqa: E402
from yamlnet.evaluate import evaluate, predict_file as predict  # noqa: E402
from yamlnet.export import export  # noqa: E402
from yamlnet.inspection import activations, grad_cam  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "Model", "ShapeError", "TrainResult", "TrainingError", "YamlnetError",
           "YamlnetWarning",
           "activations", "build_model", "evaluate", "export", "grad_cam", "load_config", "load_model", "predict",
           "train", "__version__"]

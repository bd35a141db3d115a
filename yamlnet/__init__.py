"""yamlnet: small convolutional networks described in one YAML file, in NumPy.

    model = yamlnet.build_model("models/simple.yaml")
    probabilities = model.forward(x)            # x: (N, n_H, n_W, n_C)
    loss = model.loss_and_grad(x, y)            # fills every layer's .grads
"""

from yamlnet.config import load_config
from yamlnet.errors import ConfigError, DataError, ShapeError, TrainingError, YamlnetError
from yamlnet.model import Model, build_model, load_model
from yamlnet.train import TrainResult, train
from yamlnet.evaluate import evaluate, predict_file as predict
from yamlnet.export import export

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "Model", "ShapeError", "TrainResult", "TrainingError", "YamlnetError",
           "build_model", "evaluate", "export", "load_config", "load_model", "predict", "train", "__version__"]

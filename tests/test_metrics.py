from yamlnet.metrics import METRICS, best_value, direction


def test_which_way_is_better():
    assert [direction(metric) for metric in METRICS] == [1, -1, 1, -1]
    records = [{"loss": 2.0, "val_accuracy": 0.5}, {"loss": 1.0, "val_accuracy": None}, {"loss": 3.0, "val_accuracy": 0.7}]
    assert best_value(records, "loss") == 1.0 and best_value(records, "val_accuracy") == 0.7
    assert best_value(records, "val_loss") is None

"""Random valid graphs for the tests that compare yamlnet with another implementation (PyTorch, onnxruntime)."""

from hypothesis import strategies as st


@st.composite
def random_graphs(draw):
    """A random valid graph: shape-keeping convs, pooling, batchnorms and activations, adds of
    same-shaped outputs, concats of same-sized ones; every output is read, the loose ends pooled,
    joined and classified."""
    n_h, n_w = draw(st.integers(4, 9)), draw(st.integers(4, 9))
    shapes = {"input": (n_h, n_w, draw(st.integers(1, 3)))}
    layers, read = [], set()

    def pick(candidates):
        name = draw(st.sampled_from(sorted(candidates)))
        read.add(name)
        return name

    for index in range(draw(st.integers(1, 7))):
        name = f"l{index}"
        kind = draw(st.sampled_from(["conv2d", "conv2d", "batchnorm", "activation", "add", "concat", "maxpool2d",
                                     "avgpool2d", "globalavgpool2d", "dense"]))
        volumes = {k for k, shape in shapes.items() if len(shape) == 3}
        if kind in ("conv2d", "maxpool2d", "avgpool2d", "globalavgpool2d") and not volumes:
            continue
        if kind in ("add", "concat"):
            first = draw(st.sampled_from(sorted(shapes)))
            fits = [k for k, shape in shapes.items() if (shape == shapes[first] if kind == "add" else
                                                         len(shape) == len(shapes[first]) and
                                                         shape[:-1] == shapes[first][:-1])]
            inputs = [first, *draw(st.lists(st.sampled_from(sorted(fits)), min_size=1, max_size=2))]
            read.update(inputs)
            layer = {"name": name, "type": kind, "inputs": inputs}
            if kind == "add":
                layer["activation"] = draw(st.sampled_from(["linear", "relu", "tanh"]))
                shape = shapes[first]
            else:
                shape = (*shapes[first][:-1], sum(shapes[k][-1] for k in inputs))
        else:
            source = pick(volumes if kind in ("conv2d", "maxpool2d", "avgpool2d", "globalavgpool2d") else shapes)
            layer, shape = {"name": name, "type": kind, "inputs": source}, shapes[source]
            if kind == "conv2d":
                layer.update(filters=draw(st.integers(1, 4)), size=draw(st.sampled_from([1, 3])), padding="same",
                             activation=draw(st.sampled_from(["linear", "relu", "sigmoid", "leaky_relu"])))
                shape = (*shape[:2], layer["filters"])
            elif kind in ("maxpool2d", "avgpool2d"):
                layer.update(size=2, stride=draw(st.integers(1, 2)))
                shape = ((shape[0] - 2) // layer["stride"] + 1, (shape[1] - 2) // layer["stride"] + 1, shape[2])
            elif kind == "globalavgpool2d":
                shape = (shape[2],)
            elif kind == "dense":
                layer.update(units=draw(st.integers(2, 5)), activation=draw(st.sampled_from(["linear", "tanh"])))
                shape = (layer["units"],)
            elif kind == "batchnorm":
                layer["momentum"] = draw(st.sampled_from([0.1, 0.5, 1.0]))
            elif kind == "activation":
                layer["activation"] = draw(st.sampled_from(["relu", "tanh", "sigmoid"]))
        layers.append(layer)
        shapes[name] = shape
    loose = [layer["name"] for layer in layers if layer["name"] not in read] or ["input"]
    ends = []
    for name in loose:
        if len(shapes[name]) == 3:
            layers.append({"name": f"{name}_pool", "type": "globalavgpool2d", "inputs": name})
            name = f"{name}_pool"
        ends.append(name)
    if len(ends) > 1:
        layers.append({"name": "ends", "type": "concat", "inputs": ends})
    layers += [{"name": "fc", "type": "dense", "units": 3, "inputs": "ends" if len(ends) > 1 else ends[0]},
               {"name": "prediction", "type": "softmax"}]
    return {"input": list(shapes["input"]), "layers": layers}

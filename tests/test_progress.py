"""What train shows: in a real Jupyter kernel, a progress line, the epochs and the curves, each a
display updated in place; no warning, no process left behind, and a kernel that shuts down at once."""

import os
import textwrap
import time
from pathlib import Path

from conftest import deadline_of, reference_module


def test_training_in_a_jupyter_kernel_shows_three_displays_and_leaves_nothing_behind(tmp_path):
    manager_module = reference_module("jupyter_client.manager")
    manager = manager_module.KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(Path(__file__).resolve().parent.parent))
    client = manager.client()
    client.start_channels()
    seen = {"display_data": 0, "update_display_data": 0, "stderr": "", "stdout": "", "images": 0}

    def collect(message):
        kind, content = message["msg_type"], message["content"]
        if kind in ("display_data", "update_display_data"):
            seen[kind] += 1
            seen["images"] += "image/png" in content["data"]
        elif kind == "stream":
            seen[content["name"]] += content["text"]
        elif kind == "error":
            seen["stderr"] += "\n".join(content["traceback"])

    try:
        client.wait_for_ready(timeout=60)
        reply = client.execute_interactive(textwrap.dedent(f"""
            import numpy as np, psutil, yamlnet
            from yamlnet import parallel
            parallel.cores = lambda: 2
            result = yamlnet.train("lenet", out={str(tmp_path / "run")!r}, curves=True, overrides=[
                "data.dataset=shapes", "data.n_samples=400", "training.epochs=3", "training.batch_size=64"])
            model = result.load_model()
            model.predict_proba(np.zeros((256, 28, 28, 1), np.float32), 128, normalized=True)
            children = [c.pid for c in psutil.Process().children(recursive=True)]
        """), timeout=240, output_hook=collect)
        assert reply["content"]["status"] == "ok", seen["stderr"]
        assert seen["stderr"] == "" and seen["stdout"] == ""  # no warning, no line printed: displays only
        assert seen["display_data"] == 3  # the progress line, the epoch table, the curves
        assert seen["update_display_data"] >= 3 + 3 and seen["images"] >= 3  # updated in place, curves each epoch
        client.execute_interactive("print(*children)", timeout=30, output_hook=collect)
        pids = [int(word) for word in seen["stdout"].split()]
        assert pids  # the shards' workers, alive while the model is
    finally:
        kernel = manager.provisioner.process
        client.stop_channels()
        manager.shutdown_wait_time = 5.0  # a kernel not gone 5 s after the request is killed: returncode < 0
        manager.shutdown_kernel(now=False)
    assert kernel.returncode == 0  # it ended by itself within the 5 s, its workers with it
    with deadline_of(30):  # (a worker sees its pipe close and exits within moments; a guard, not a timing)
        while [pid for pid in pids if os.path.exists(f"/proc/{pid}")
               and open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]:
            time.sleep(0.01)

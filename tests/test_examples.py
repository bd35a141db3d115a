"""The tutorial notebook runs top to bottom in a real kernel (nbclient), and is stored without outputs."""

import json

from conftest import ROOT, reference_module

NOTEBOOK = ROOT / "examples" / "one_layer_of_a_convnet.ipynb"


def test_the_notebook_is_stored_without_outputs():
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    assert all(not cell.get("outputs") and cell.get("execution_count") is None for cell in cells if
               cell["cell_type"] == "code")


def test_the_notebook_runs_top_to_bottom(tmp_path):
    nbformat = reference_module("nbformat")
    nbclient = reference_module("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    text = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.outputs)
    assert "by hand:" in text and "run:" in text and "Grad-CAM at conv2" in text
    assert not any(output.get("name") == "stderr" for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.outputs)

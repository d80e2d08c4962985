"""notebooks/quickstart.ipynb runs top to bottom in a fresh kernel (as CI and AI Studio run it): every cell
without error, the pictures shown, the exported model's matte equal to the dygraph one; stored without outputs."""
import importlib.util
import json
import os
import re

import pytest

from conftest import ROOT

NOTEBOOK = os.path.join(ROOT, 'notebooks', 'quickstart.ipynb')
MISSING = [name for name in ('nbclient', 'ipykernel') if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(bool(MISSING) and not os.environ.get('CI'),
                                reason=f'running the notebook needs {", ".join(MISSING)}')


def test_the_notebook_is_stored_without_outputs():
    with open(NOTEBOOK, encoding='utf-8') as f:
        cells = json.load(f)['cells']
    code = [c for c in cells if c['cell_type'] == 'code']
    assert code and all(c['outputs'] == [] and c['execution_count'] is None for c in code)


def test_the_notebook_runs_to_the_end():
    import nbclient
    import nbformat
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=900, kernel_name='python3',
                            resources={'metadata': {'path': os.path.dirname(NOTEBOOK)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == 'code' for o in c.outputs]
    assert not [o for o in outputs if o.output_type == 'error']
    assert sum('image/png' in o.get('data', {}) for o in outputs) >= 4     # inputs, mattes, chart, exported
    text = ''.join(o.get('text', '') for o in outputs)
    work = os.path.join(ROOT, 'output', 'notebook')
    for path in ('eval/report.html', 'eval/report.png', 'checkpoint/notebook/final.pdparams', 'export/model.pdmodel',
                 'predict_inference/pha/bgmv1_0500.png'):
        assert os.path.isfile(os.path.join(work, path)), path
    assert re.search(r'Train/loss\s+(\d+\.\d+ ){4}\d+\.\d+', text)                        # five logged losses
    difference = int(re.search(r'largest difference from the dygraph matte \(0-255\): (\d+)', text).group(1))
    assert difference <= 2

import os
import sys
from html.parser import HTMLParser

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, 'tests', 'data')


def kill_and_resume(train_main, common, out):
    """Run train.py `common` whole (name 'whole'), then as a subprocess with data-loading workers (name 'killed')
    SIGKILLed (no clean-up) as soon as its step-2 checkpoint exists, then resumed to the end. Asserts the kill
    came in time and that both runs end with the same weights; returns (whole, resumed) final state dicts."""
    import signal
    import subprocess
    import time
    import numpy as np
    import paddle
    train_main(common + ['--name', 'whole'])
    cmd = [sys.executable, os.path.join(ROOT, 'train.py'), *common, '--name', 'killed', '--num-workers', '2']
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first = out / 'ck' / 'killed' / 'step-0000002.json'
    deadline = time.time() + 180
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists() and not (out / 'ck' / 'killed' / 'final.pdparams').exists()
    train_main(common + ['--name', 'killed'])
    whole, resumed = ({k: np.asarray(v) for k, v in paddle.load(str(out / 'ck' / n / 'final.pdparams')).items()}
                      for n in ('whole', 'killed'))
    assert whole.keys() == resumed.keys()
    for k in whole:
        np.testing.assert_allclose(resumed[k], whole[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert 'resumed' in (out / 'log' / 'killed' / 'train.log').read_text()
    return whole, resumed


def build_model(model_type, backbone, **options):
    """The untrained network the family registry builds for these options (the tests' shorthand)."""
    import config
    import families
    spec = families.family_of(model_type)
    return spec.build(config.ModelConfig(model_type=model_type, backbone=backbone, device='cpu', family=spec.name,
                                         options=spec.options(**options)))



def report_rows(out):
    """The rows of report.html: (name, number of embedded thumbnails, {column: data-value})."""
    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.header, self.rows, self.cells, self.in_head = [], [], 0, False

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            self.in_head = (self.in_head or tag == 'thead') and tag != 'tbody'
            if tag == 'tr' and not self.in_head:
                self.rows.append(['', 0, {}])
                self.cells = 0
            elif tag == 'td':
                if 'data-value' in attrs:
                    self.rows[-1][2][self.header[self.cells]] = float(attrs['data-value'])
                self.cells += 1
            elif tag == 'img' and self.rows and attrs['src'].startswith('data:image/jpeg;base64,'):
                self.rows[-1][1] += 1

        def handle_data(self, data):
            if self.in_head and data.strip():
                self.header.append(data.strip())
            elif self.rows and self.cells == 1 and not self.rows[-1][0]:
                self.rows[-1][0] = data.strip()
    parser = Rows()
    parser.feed(open(os.path.join(out, 'report.html'), encoding='utf-8').read())
    return parser.rows

@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item (item.rep_call), so that fixtures can tell a failed test in teardown
    (the browser test saves a screenshot then)."""
    outcome = yield
    setattr(item, 'rep_' + outcome.get_result().when, outcome.get_result())

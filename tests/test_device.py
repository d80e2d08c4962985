"""utils.device: the CPU heap setting that keeps large tensors off fresh mappings, and the usable CPU cores."""
import ctypes
import ctypes.util
import os
import subprocess
import sys

import pytest

from utils.device import cgroup_cpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# a fresh process (the test runner's heap has its own history): the bytes glibc holds in mmap'd blocks
# (mallinfo2's hblkhd) while a 64 MB array is alive, after set_device('cpu') or not
PROBE = '''
import ctypes, sys
import numpy as np
sys.path.insert(0, {root!r})
if sys.argv[1] == 'cpu':
    from utils.device import set_device
    set_device('cpu')

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks',
                 'keepcost')]

libc = ctypes.CDLL('libc.so.6')
libc.mallinfo2.restype = MallInfo2
block = np.ones(16 << 20, np.float32)
print(libc.mallinfo2().hblkhd)
'''


def mapped_bytes(mode):
    out = subprocess.run([sys.executable, '-c', PROBE.format(root=ROOT), mode], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[-1])


@pytest.mark.skipif(not hasattr(ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6'), 'mallinfo2'),
                    reason='needs glibc >= 2.33 (mallinfo2)')
def test_cpu_device_serves_large_tensors_from_the_heap():
    assert mapped_bytes('default') >= 64 << 20        # glibc maps a 64 MB block by itself...
    assert mapped_bytes('cpu') < 64 << 20             # ...unless set_device('cpu') kept large blocks on the heap


@pytest.mark.parametrize('files, cpus', [
    ({'cpu.max': '150000 100000\n'}, 2),                                  # docker --cpus 1.5 on cgroup v2
    ({'cpu.max': 'max 100000\n'}, None),                                  # v2 without a quota
    ({'cpu/cpu.cfs_quota_us': '400000\n', 'cpu/cpu.cfs_period_us': '100000\n'}, 4),    # cgroup v1
    ({'cpu/cpu.cfs_quota_us': '-1\n', 'cpu/cpu.cfs_period_us': '100000\n'}, None),
    ({}, None),
])
def test_cgroup_quota_caps_the_cores(tmp_path, files, cpus):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpus(str(tmp_path)) == cpus


def test_usable_cpus_is_the_affinity_capped_by_the_quota(monkeypatch):
    import utils.device as device
    monkeypatch.setattr(device, 'cgroup_cpus', lambda: 1)
    assert device.usable_cpus() == 1
    monkeypatch.setattr(device, 'cgroup_cpus', lambda: None)
    assert device.usable_cpus() == len(os.sched_getaffinity(0))

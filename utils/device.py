"""Choosing the device Paddle runs on, and how many CPU cores it may use."""
import ctypes
import ctypes.util
import math
import os

import paddle

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4      # glibc's mallopt parameters (malloc.h)


def keep_large_blocks():
    """Large CPU tensors from the process heap instead of fresh mappings. glibc gives every block above 32 MB its
    own mmap and unmaps it when freed, so each large tensor a training step allocates starts as new pages: the
    page faults made an elementwise op on a 4x37x256x256 tensor take 22 ms instead of 7.5 ms on this project's
    machine, and a MattingBase step 5.2 s instead of 4.8 s. Up to 1 GiB of freed memory stays at the heap's top
    for the next step. Returns False where there is no glibc mallopt (macOS, Windows, musl)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        return bool(libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False


def cgroup_cpus(root='/sys/fs/cgroup'):
    """CPUs a cgroup quota allows (a container's --cpus: v2 cpu.max, v1 cpu/cpu.cfs_quota_us), rounded up; None
    without a quota."""
    try:
        with open(os.path.join(root, 'cpu.max')) as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        try:
            with open(os.path.join(root, 'cpu', 'cpu.cfs_quota_us')) as q, \
                    open(os.path.join(root, 'cpu', 'cpu.cfs_period_us')) as p:
                quota, period = q.read().strip(), p.read().strip()
        except OSError:
            return None
    if not (quota.isdigit() and period.isdigit() and int(period) > 0):
        return None                                     # 'max' (v2) or -1 (v1): no quota
    return max(1, math.ceil(int(quota) / int(period)))


def usable_cpus():
    """The cores this process may use: its CPU affinity, capped by a cgroup quota (more threads than the quota
    only wait for their turn)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    quota = cgroup_cpus()
    return min(cores, quota) if quota else cores


def set_device(name):
    """'cpu' or 'gpu'; a clear error for gpu on a CPU build of Paddle. On CPU also keep_large_blocks()."""
    if name == 'gpu' and not paddle.device.is_compiled_with_cuda():
        raise ValueError("--device gpu needs paddlepaddle-gpu (this Paddle is a CPU build); use --device cpu")
    paddle.set_device(name)
    if name == 'cpu':
        keep_large_blocks()

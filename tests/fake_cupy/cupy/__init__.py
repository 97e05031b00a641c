"""A fake ``cupy`` for dry runs of the GPU tests and benchmark on the CPU: the strict stand-in under CuPy's name.

``tests/test_gpu_dryrun.py`` puts ``tests/fake_cupy`` first on ``PYTHONPATH`` of a child process and runs
``tests/test_gpu.py`` (``-m gpu``) and ``minigcnc.bench.gpu --quick`` in it, so that the GPU test code, the
``"cupy"`` backend's registration path (``backend.set_backend("cupy")``) and the benchmark are exercised on every CI run
instead of only on a lent GPU. The arrays are ``strict_device.StrictArray``: NumPy underneath, with every
implicit copy to the host refused (``DeviceLeak``), which is stricter than CuPy (CuPy allows ``float()`` of a
0-d array). What a dry run cannot show is anything about CUDA itself: CuPy's own kernels, its numerical
differences from NumPy, memory limits, speed. Those need ``bash tests/gpu/check.sh`` on a real GPU.

Never importable from the main test process: only the child's ``PYTHONPATH`` names this folder.
"""
import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # tests/

from strict_device import DeviceLeak, StrictArray, strict  # noqa: E402,F401

__version__ = "0.0+strict-stand-in"
ndarray = StrictArray
asnumpy = strict.asnumpy
FAKE = True  # lets a caller tell the stand-in from the real CuPy

_MEMORY = 1 << 30  # what the fake device reports as its memory, in bytes


def __getattr__(name):  # every NumPy function, with results on the "device" (cupy.asarray, cupy.zeros, ...)
    return getattr(strict, name)


class _MemoryPool:
    def free_all_blocks(self):
        pass


_POOL = _MemoryPool()


def get_default_memory_pool():
    return _POOL


class _Device:
    def __init__(self, index=0):
        self.id = index

    def synchronize(self):
        pass

    @property
    def mem_info(self):
        return _MEMORY, _MEMORY


_runtime = types.SimpleNamespace(
    getDeviceCount=lambda: 1,
    getDeviceProperties=lambda index: {"name": b"strict stand-in (CPU)", "totalGlobalMem": _MEMORY},
    runtimeGetVersion=lambda: 0,
    driverGetVersion=lambda: 0,
)
cuda = types.SimpleNamespace(runtime=_runtime, Device=_Device)

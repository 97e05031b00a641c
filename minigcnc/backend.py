"""The array backend: which array module (NumPy through autograd, or CuPy) holds the data.

Every function in ``ops``, ``layers``, ``jacobians``, ``gc`` and ``collapse`` asks ``get_xp(*arrays)`` for the module of
its inputs and uses only that module's functions, so the same code runs on the host and on a device.

- ``get_xp(*arrays)``: the array module of the arguments (autograd boxes are looked through);
  ``autograd.numpy`` for host arrays, the registered device module (``cupy``) for device arrays.
- ``set_backend(name)`` / environment variable ``MINIGCNC_BACKEND``: where *new* arrays go
  (``init`` of a model, ``asarray``); ``"numpy"`` by default.
- ``to_numpy(a)``: the one explicit way back to the host (for logging, plotting, saving).
- ``register_device(name, array_type, module)``: makes a device array type known to autograd
  (``ArrayBox`` and a vector space whose zeros and ones are allocated on the device). CuPy is
  registered this way when asked for; the tests register a strict stand-in the same way.
"""
import os

import numpy as onp
import autograd.numpy as anp
from .autograd_internals import ArrayBox, VSpace, getval

_device_modules = {}  # array type -> its array module
_named_devices = {}  # backend name -> (array type, module)
_current = None  # backend name


class DeviceVSpace(VSpace):
    """autograd's vector space for a device array: zeros/ones are made by the device module."""

    def __init__(self, value):
        self.shape = value.shape
        self.dtype = value.dtype
        self.xp = _device_modules[type(value)]

    @property
    def size(self):
        return int(onp.prod(self.shape))

    @property
    def ndim(self):
        return len(self.shape)

    def zeros(self):
        return self.xp.zeros(self.shape, dtype=self.dtype)

    def ones(self):
        return self.xp.ones(self.shape, dtype=self.dtype)

    def standard_basis(self):
        for idx in onp.ndindex(*self.shape):
            v = self.xp.zeros(self.shape, dtype=self.dtype)
            v[idx] = 1
            yield v

    def randn(self):
        return self.xp.asarray(onp.random.randn(*self.shape).astype(self.dtype))

    def _inner_prod(self, x, y):
        return self.xp.sum(x * y)


def register_device(name, array_type, module):
    """Register a device array type and its array module with autograd and with ``get_xp``.

    After this, autograd traces through ``array_type`` (``ArrayBox``), allocates its gradients on the
    device (``DeviceVSpace``), and ``set_backend(name)`` sends new arrays there.
    """
    ArrayBox.register(array_type)
    DeviceVSpace.register(array_type)
    _device_modules[array_type] = module
    _named_devices[name] = (array_type, module)


def _load_cupy():
    try:
        import cupy
    except ImportError as e:
        raise ValueError(
            "backend='cupy' needs CuPy, which is not installed. Install it with "
            "`pip install -e \".[gpu]\"` (cupy-cuda12x; \".[gpu-cuda13]\" for CUDA 13) on a machine with a CUDA GPU, "
            "or use the NumPy backend (backend='numpy'; --backend numpy on the command line)."
        ) from e
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver missing or broken
        raise ValueError(
            f"backend='cupy': CuPy is installed but no usable CUDA GPU was found ({e}). "
            "Use the NumPy backend on this machine (backend='numpy'; --backend numpy on the command line)."
        ) from e
    if n < 1:
        raise ValueError("backend='cupy': CuPy is installed but no CUDA GPU is present; use the NumPy backend "
                         "(backend='numpy'; --backend numpy on the command line).")
    register_device("cupy", cupy.ndarray, cupy)


def set_backend(name):
    """Choose where new arrays are created: ``"numpy"`` (default), ``"cupy"``, or a registered device name."""
    global _current
    _current = _check_backend_name(name)
    return _current


def get_backend():
    """The name of the current backend (``MINIGCNC_BACKEND`` decides the first time, else ``"numpy"``)."""
    global _current
    if _current is None:
        set_backend(os.environ.get("MINIGCNC_BACKEND", "numpy") or "numpy")
    return _current


def backend_module(name=None):
    """The array module that creates arrays for backend ``name`` (default: the current backend)."""
    name = get_backend() if name is None else _check_backend_name(name)
    return anp if name == "numpy" else _named_devices[name][1]


def _check_backend_name(name):
    """Validate ``name`` (loading CuPy if asked for) and return it lower-cased."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string such as 'numpy' or 'cupy'; got {type(name).__name__}")
    name = name.lower()
    if name == "cupy" and "cupy" not in _named_devices:
        _load_cupy()
    if name != "numpy" and name not in _named_devices:
        extra = sorted(set(_named_devices) - {"cupy"})
        raise ValueError(f"unknown backend {name!r}; accepted: 'numpy', 'cupy'" + "".join(", " + repr(e) for e in extra))
    return name


def get_xp(*arrays):
    """The array module of ``arrays``: the device module if any of them lives on a device, else autograd.numpy."""
    for a in arrays:
        t = type(getval(a))
        if t in _device_modules:
            return _device_modules[t]
    return anp


def is_device_array(a):
    """True when ``a`` (or the value inside an autograd box) is a registered device array."""
    return type(getval(a)) in _device_modules


def default_dtype(name=None):
    """float64 on the host (exact tests), float32 on a device."""
    name = get_backend() if name is None else name
    return "float64" if name == "numpy" else "float32"


def asarray(a, dtype=None, backend=None):
    """``a`` as an array of ``backend`` (default: the current one), optionally cast to ``dtype``."""
    xp = backend_module(backend)
    if xp is anp:
        return onp.asarray(to_numpy(a), dtype=dtype)
    if type(a) in _device_modules:
        return a if dtype is None else a.astype(dtype)
    return xp.asarray(onp.asarray(a, dtype=dtype))


def to_numpy(a):
    """``a`` as a host ``numpy.ndarray`` (an explicit device-to-host copy for device arrays)."""
    a = getval(a)
    t = type(a)
    if t in _device_modules:
        mod = _device_modules[t]
        if hasattr(mod, "asnumpy"):
            return mod.asnumpy(a)
        return a.get()
    return onp.asarray(a)


def tree_map(f, tree):
    """Apply ``f`` to every array leaf of a nested list/tuple/dict, keeping the structure."""
    if isinstance(tree, dict):
        return {k: tree_map(f, v) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(tree_map(f, v) for v in tree)
    if isinstance(tree, list):
        return [tree_map(f, v) for v in tree]
    return f(tree)


def tree_leaves(tree):
    """The array leaves of a nested list/tuple/dict, in a fixed depth-first order.

    Looks through autograd's container boxes: a list/tuple/dict that autograd differentiates arrives boxed
    (``SequenceBox``/``DictBox``), and its items, taken by indexing, stay traced.
    """
    value = getval(tree)
    if isinstance(value, dict):
        return [x for k in value for x in tree_leaves(tree[k])]
    if isinstance(value, (list, tuple)):
        return [x for i in range(len(value)) for x in tree_leaves(tree[i])]
    return [tree]


def tree_unflatten(tree, leaves):
    """Rebuild ``tree``'s structure from ``leaves`` (the inverse of ``tree_leaves``)."""
    it = iter(leaves)
    out = tree_map(lambda _: next(it), tree)
    return out


def to_device(tree, backend=None, dtype=None):
    """Copy every leaf of ``tree`` to ``backend`` (default: the current one)."""
    return tree_map(lambda a: asarray(a, dtype=dtype, backend=backend), tree)


def tree_to_numpy(tree):
    """Copy every leaf of ``tree`` to the host."""
    return tree_map(to_numpy, tree)

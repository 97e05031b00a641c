"""A strict stand-in for a GPU array, to prove on the CPU that nothing leaves the "device".

``StrictArray`` wraps an ndarray and behaves like a CuPy array where it matters:

- NumPy functions and ufuncs called on it dispatch (``__array_function__`` / ``__array_ufunc__``) and return
  ``StrictArray``s, as they do for CuPy;
- implicit conversion to NumPy (``numpy.asarray``, ``float()``, ``bool()``, ``int()``) raises ``DeviceLeak``;
- mixing it with a host ``numpy.ndarray`` in one operation raises ``DeviceLeak`` (CuPy raises TypeError);
- the only way back is explicit: ``.get()`` (``backend.to_numpy``).

``strict`` is its array module (the analogue of ``cupy``): every NumPy function, with results on the
"device". ``register()`` makes it known to autograd and minigcnc as the backend ``"strict"``.
"""
import numpy as np
from autograd.tracer import Box
from numpy.lib.mixins import NDArrayOperatorsMixin

from minigcnc import backend


class DeviceLeak(AssertionError):
    """Raised when device data would be converted to, or mixed with, host NumPy arrays implicitly."""


def _unwrap(x, allow_host):
    if isinstance(x, StrictArray):
        return x._a
    if isinstance(x, np.ndarray) and not allow_host:
        raise DeviceLeak(f"a host numpy array of shape {x.shape} was mixed with device arrays")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, allow_host) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, allow_host) for k, v in x.items()}
    return x


def _wrap(x):
    if isinstance(x, (np.ndarray, np.generic)) and not isinstance(x, (np.dtype,)):
        if isinstance(x, np.generic) and not isinstance(x, np.number) and not isinstance(x, np.bool_):
            return x
        return StrictArray(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


class StrictArray(NDArrayOperatorsMixin):
    """An ndarray that refuses to leave the device implicitly (see the module docstring)."""

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, a):
        self._a = np.asarray(a)

    # explicit transfer back to the host
    def get(self):
        return self._a.copy()

    # implicit conversions are leaks
    def __array__(self, *args, **kwargs):
        raise DeviceLeak("implicit conversion of a device array to numpy (np.asarray / np.array)")

    def __float__(self):
        raise DeviceLeak("float() of a device array: use backend.to_numpy")

    def __int__(self):
        raise DeviceLeak("int() of a device array: use backend.to_numpy")

    def __bool__(self):
        raise DeviceLeak("bool() of a device array (a data-dependent branch): use backend.to_numpy")

    def __index__(self):
        raise DeviceLeak("a device array used as a Python index")

    # dispatch
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if any(isinstance(x, Box) for x in inputs):
            return NotImplemented  # let autograd's box trace the operation (CuPy defers the same way)
        raw = _unwrap(inputs, allow_host=False)
        if "out" in kwargs:
            kwargs["out"] = _unwrap(kwargs["out"], allow_host=False)
        return _wrap(getattr(ufunc, method)(*raw, **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        return _wrap(func(*_unwrap(args, allow_host=False), **_unwrap(kwargs, allow_host=False)))

    # the ndarray surface the code uses
    shape = property(lambda self: self._a.shape)
    ndim = property(lambda self: self._a.ndim)
    dtype = property(lambda self: self._a.dtype)
    size = property(lambda self: self._a.size)
    T = property(lambda self: StrictArray(self._a.T))

    def __len__(self):
        return len(self._a)

    def __repr__(self):
        return f"StrictArray({self._a!r})"

    def __getitem__(self, idx):
        return _wrap(self._a[_unwrap(idx, allow_host=False)])

    def __setitem__(self, idx, value):
        self._a[_unwrap(idx, allow_host=False)] = _unwrap(value, allow_host=False)

    def __iter__(self):
        return (StrictArray(v) for v in self._a)

    def __getattr__(self, name):
        # methods such as reshape, transpose, sum, max, argmax, astype, copy, repeat, ravel; never the
        # buffer protocols (__array_interface__, __array_struct__), through which numpy would copy silently
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return lambda *a, **k: _wrap(attr(*_unwrap(a, allow_host=False), **_unwrap(k, allow_host=False)))
        return _wrap(attr)


class _StrictModule:
    """The array module of ``StrictArray`` (the analogue of ``cupy``): NumPy functions on the device."""

    __name__ = "strict"
    ndarray = StrictArray

    def __getattr__(self, name):
        obj = getattr(np, name)
        if isinstance(obj, type) or not callable(obj):
            return obj  # dtypes, constants

        def on_device(*args, **kwargs):
            # host arrays may be passed in (a host-to-device copy, like cupy.asarray); results stay on device
            return _wrap(obj(*_unwrap(args, allow_host=True), **_unwrap(kwargs, allow_host=True)))

        on_device.__name__ = name
        return on_device

    @staticmethod
    def asnumpy(a):
        return a.get() if isinstance(a, StrictArray) else np.asarray(a)


strict = _StrictModule()


def register():
    """Register the stand-in with autograd and minigcnc as backend 'strict' (idempotent)."""
    backend.register_device("strict", StrictArray, strict)
    return strict

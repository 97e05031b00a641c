"""Argument checks shared by every module: one family of validators, one rng coercer, one atomic writer.

Each check names the parameter, says what it received and what it accepts, and raises before any work
starts: ``TypeError`` for an argument of the wrong kind, ``ValueError`` for one of the right kind with a bad
value (out of range, non-finite, a class missing).
"""
import math
import os
from numbers import Integral, Real
from pathlib import Path

import numpy as onp


def integer(name, value, minimum=1, allow_none=False, meaning=""):
    """``value`` as an int after checking it is an integer >= ``minimum`` (or None when ``allow_none``)."""
    if value is None and allow_none:
        return None
    why = f" ({meaning})" if meaning else ""
    accepted = f"an integer >= {minimum}{' or None' if allow_none else ''}{why}"
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be {accepted}; got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be {accepted}; got {value!r}")
    return int(value)


def number(name, value, low=0.0, low_open=False, high=None):
    """``value`` as a float after checking it is finite, >= ``low`` (> when ``low_open``) and < ``high``."""
    accepted = f"a finite number {'>' if low_open else '>='} {low:g}" + (f" and < {high:g}" if high is not None else "")
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be {accepted}; got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < low or (low_open and v == low) or (high is not None and v >= high):
        raise ValueError(f"{name} must be {accepted}; got {value!r}")
    return v


def one_of(name, value, choices):
    """``value`` after checking it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


def as_rng(rng, name="rng", why_needed=""):
    """A ``numpy.random.Generator`` from a Generator or an integer seed; None is refused (no hidden seed).

    ``why_needed`` completes the message when None is given (e.g. "method='subset' is random").
    """
    if isinstance(rng, onp.random.Generator):
        return rng
    if isinstance(rng, Integral) and not isinstance(rng, bool):
        return onp.random.default_rng(int(rng))
    if rng is None:
        raise ValueError(f"{name} is required{': ' + why_needed if why_needed else ''}: give a "
                         "numpy.random.Generator or an int seed. There is no default seed, so that repeated random "
                         "draws are never silently identical.")
    raise TypeError(f"{name} must be a numpy.random.Generator or an int seed; got {type(rng).__name__}")


def finite(A, name):
    """Raise a ValueError naming ``name``, how many entries of ``A`` are NaN or inf, and the first one's index.

    Works on any array module (NumPy, CuPy); only two scalars travel to the host when ``A`` is finite.
    """
    from .backend import get_xp, to_numpy

    xp = get_xp(A)
    ok = xp.isfinite(A)
    if bool(to_numpy(xp.all(ok))):
        return A
    bad = onp.argwhere(~to_numpy(ok))
    first = tuple(int(i) for i in bad[0])
    raise ValueError(f"{name} contains {len(bad)} non-finite values (NaN or inf) out of {A.size}; the first at index "
                     f"{first if len(first) > 1 else first[0]}. Remove or impute them first: every entry must be "
                     "finite")


def no_string_labels(y, name="y"):
    """Raise a ValueError naming ``name`` if the host label array ``y`` holds strings (or bytes), with the fix."""
    y = onp.asarray(y)
    if y.dtype.kind in "US" or (y.dtype.kind == "O" and any(isinstance(v, (str, bytes)) for v in y.ravel())):
        raise ValueError(f"{name} must hold integer class labels; got strings (dtype {y.dtype}): map them to 0..k-1, "
                         f"e.g. numpy.unique({name}, return_inverse=True)[1]")
    return y


def classes_match(labels_a, labels_b, name_a, name_b):
    """Raise a ValueError naming, by label, the classes present in one label array and absent from the other."""
    a, b = set(onp.unique(onp.asarray(labels_a)).tolist()), set(onp.unique(onp.asarray(labels_b)).tolist())
    if a == b:
        return
    parts = []
    if a - b:
        parts.append(f"class(es) {sorted(a - b)} occur in {name_a} but not in {name_b}")
    if b - a:
        parts.append(f"class(es) {sorted(b - a)} occur in {name_b} but not in {name_a}")
    raise ValueError("; ".join(parts) + ": both must hold the same classes")


def write_atomically(path, write):
    """Call ``write(tmp_path)`` and rename the result onto ``path``: a reader never sees a half-written file.

    The temporary file lies in the same folder (so the rename is atomic) and is named ``.<name>.tmp-<pid>``:
    it never matches a pattern like ``*.json`` meant for finished files, even when a killed process leaves it
    behind, so a writer that chooses a format by suffix must be told the format (``savefig(format=...)``, or
    ``numpy.savez`` on an open file). It is removed if ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


"""How many BLAS threads the library's hot loops use: one for small host problems, unless told otherwise.

NumPy's BLAS (OpenBLAS, MKL) starts one thread per core for every matrix product. For the small products of a
laptop-scale training step that costs more than it gains: the threads wake up, synchronise and spin between
products while the step's elementwise work waits for a core. Measured with ``python -m minigcnc.bench --only
threads`` (300 steps of an MLP 784-256-256-64, batch 64, on a busy 2-core machine): 9-19 s with BLAS left
alone against 1-2 s with one thread. So ``train.fit`` and the exact-Jacobian passes (``jacobian_passes.run_passes``:
exact GC and its estimators, class GC, directional GC) run their loops inside ``blas_limit``, and the collapse
metrics ``collapse.cdnv`` and ``collapse.nc1`` run inside it through ``host_limited`` (work N p^2):

- the automatic rule (``auto_threads``): one BLAS thread when the work of one call of the loop is below
  ``SMALL_WORK`` multiply-adds, on the host NumPy backend only; otherwise BLAS is left alone. ``fit``'s work is
  batch_size x the number of parameters (the multiply-adds of a dense net's forward pass; a conv net does
  more, as every kernel is reused at every position). Exact-Jacobian passes are cache-sized by their planner
  (``jacobian_passes.plan``), so they always count as small (and passes that run in parallel threads always get one
  BLAS thread each). A device backend (CuPy) is never touched.
- overrides, in this order: the caller's ``blas_threads`` keyword (``fit(..., blas_threads=...)``), then the
  environment variable ``MINIGCNC_BLAS_THREADS``, then the rule. Values: ``None`` / ``"auto"``: the rule; an
  integer n >= 1: at most n threads; ``0`` or ``"all"``: leave BLAS alone.
- a limit already in place (the user's own ``threadpoolctl.threadpool_limits``, a sweep's per-job limit) is
  never raised: the block runs with the smaller of the two.

Threads change only the order of BLAS's partial sums, so results agree to round-off (float64: 1e-12), not
bit for bit.
"""
import contextlib
import functools
import math
import os
from numbers import Integral

from .backend import is_device_array

ENV_VAR = "MINIGCNC_BLAS_THREADS"
SMALL_WORK = 2**27  # multiply-adds (~134 M): below it one loop call takes ~10 ms or less on one core


def auto_threads(work, on_host=True):
    """The automatic rule: 1 for host work below ``SMALL_WORK`` multiply-adds, else None (leave BLAS alone)."""
    return 1 if on_host and work < SMALL_WORK else None


def resolve(blas_threads=None, *, work=0, on_host=True):
    """The BLAS thread limit to apply (an int >= 1), or None to leave BLAS alone.

    ``blas_threads``: None or "auto" (then ``$MINIGCNC_BLAS_THREADS``, then ``auto_threads(work, on_host)``),
    an int n >= 1, or 0 / "all". Off the host (a device backend) always None.
    """
    if not on_host:
        return None
    name, value = "blas_threads", blas_threads
    if value is None or value == "auto":
        name, value = ENV_VAR, os.environ.get(ENV_VAR, "").strip().lower() or "auto"
        if value == "auto":
            return auto_threads(work, on_host)
    if value == "all":
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    accepted = ("None or 'auto' (the automatic rule), an integer n >= 1 (at most n BLAS threads), or 0 or 'all' "
                "(leave BLAS alone)")
    if isinstance(value, bool) or not isinstance(value, (Integral, str)):
        raise TypeError(f"{name} must be {accepted}; got {type(value).__name__} {value!r}")
    if isinstance(value, str) or value < 0:
        raise ValueError(f"{name} must be {accepted}; got {value!r}")
    return int(value) or None


@functools.lru_cache(maxsize=1)
def _blas_libraries():
    """threadpoolctl's view of the loaded BLAS libraries, found once per process (the search costs ms)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def host_limited(fn):
    """Decorator for a metric ``fn(Z, ...)`` of features ``Z`` (N, p): run it inside ``blas_limit`` with the
    work ``N p^2`` (a covariance-sized product), so small host problems use one BLAS thread."""

    @functools.wraps(fn)
    def run(Z, *args, **kwargs):
        shape = getattr(Z, "shape", ())
        work = int(math.prod(shape)) * (int(shape[-1]) if len(shape) > 1 else 1)
        with blas_limit(work=work, on_host=not is_device_array(Z)):
            return fn(Z, *args, **kwargs)

    return run


@contextlib.contextmanager
def blas_limit(blas_threads=None, *, work=0, on_host=True):
    """Run the block with at most ``resolve(blas_threads, work=work, on_host=on_host)`` BLAS threads.

    Never raises a lower limit already in place. Yields the limit applied (None when BLAS is left alone).
    """
    n = resolve(blas_threads, work=work, on_host=on_host)
    if n is None:
        yield None
        return
    blas = _blas_libraries()
    current = min((lib["num_threads"] for lib in blas.info()), default=None)
    if current is None or current <= n:  # no BLAS found, or already limited at least as much
        yield current
        return
    with blas.limit(limits=n):
        yield n

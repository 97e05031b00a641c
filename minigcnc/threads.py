"""How many BLAS threads the library's hot loops use: one for small host problems and on a busy machine.

NumPy's BLAS (OpenBLAS, MKL) starts one thread per core for every matrix product. Two costs decide whether that
pays: each product wakes, synchronises and spins its threads, which a small product cannot repay; and a BLAS
thread that shares its core with another busy process waits for the core's time slice at every synchronisation,
so every product runs at the pace of the slowest core. On an idle machine a laptop-scale training step (an MLP
784-256-256-64 or the laptop convnet) gains from all cores; beside one busy process the same step is several
times slower with all cores than with one. ``python -m minigcnc.bench --only threads`` measures both against the
rule below. So ``train.fit`` and the exact-Jacobian passes (``jacobian_passes.run_passes``: exact GC and its
estimators, class GC, directional GC) run their loops inside ``blas_limit``, and the collapse metrics
``collapse.cdnv`` and ``collapse.nc1`` run inside it through ``host_limited`` (work N p^2):

- the automatic rule (``auto_threads``), on the host NumPy backend only: one BLAS thread when the work of one
  call of the loop is below ``SMALL_WORK`` multiply-adds; otherwise as many threads as the machine has idle
  cores (``idle_cores``: the cores this process may use less the other processes' running threads, at least
  one), but no more than one per ``SMALL_WORK`` of work (each thread's share must repay its synchronisation),
  and BLAS is left alone when that is every core. ``fit``'s work (``fit_work``) is the batch's forward
  multiply-adds from ``models.forward_macs``: every dense layer's ``fan_in x fan_out`` and every convolution's
  kernel once per output position. Exact-Jacobian passes are cache-sized by their planner
  (``jacobian_passes.plan``), so they always count as small (and passes that run in parallel threads always
  get one BLAS thread each). A device backend (CuPy) is never touched.
- overrides, in this order: the caller's ``blas_threads`` keyword (``fit(..., blas_threads=...)``), then the
  environment variable ``MINIGCNC_BLAS_THREADS``, then the rule. Values: ``None`` / ``"auto"``: the rule; an
  integer n >= 1: at most n threads; ``0`` or ``"all"``: leave BLAS alone.
- a limit already in place (the user's own ``threadpoolctl.threadpool_limits``, a sweep's per-job limit) is
  never raised: the block runs with the smaller of the two.

Threads change only the order of BLAS's partial sums, so results agree to round-off (float64: 1e-12), not
bit for bit. Above ``SMALL_WORK`` the rule reads the machine's load when the block starts, so two runs of one
big configuration may differ by round-off when the load differs; ``MINIGCNC_BLAS_THREADS=1`` (or any fixed
value) makes them bit-identical.
"""
import contextlib
import functools
import math
import os
import time
from numbers import Integral

from .backend import is_device_array

ENV_VAR = "MINIGCNC_BLAS_THREADS"
SMALL_WORK = 2**22  # multiply-adds (about 4 M): below it one loop call is too little work to share across threads
LOAD_WINDOW = 0.03  # seconds over which ``idle_cores`` reads the machine's busy time (once per block above SMALL_WORK)
# a core counts as idle when less than 1 - IDLE_ROUNDING of it is busy: a thread too many beside a busy process
# costs several times the step, a thread too few at most the share one core adds, so a doubtful core is busy
IDLE_ROUNDING = 0.3


def usable_cores():
    """The cores this process may run on (its CPU affinity where the system reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _busy_cores_proc_stat(window):
    """Cores' worth of time other processes ran during ``window`` seconds (Linux /proc/stat), or None."""
    def ticks():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values[:8]), idle, time.process_time(), time.perf_counter()

    try:
        total0, idle0, own0, t0 = ticks()
        time.sleep(window)  # this thread sleeps meanwhile
        total1, idle1, own1, t1 = ticks()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0 or t1 <= t0:
        return None
    busy = (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (total1 - total0))
    return max(0.0, busy - (own1 - own0) / (t1 - t0))  # less this process's own threads (BLAS threads spinning)


def idle_cores(window=LOAD_WINDOW):
    """The usable cores that no other process keeps busy now, at least 1.

    Linux: the machine's busy time over ``window`` seconds (``/proc/stat``), while this process sleeps;
    elsewhere the one-minute load average (``os.getloadavg``); where neither exists, every usable core.
    """
    cores = usable_cores()
    busy = _busy_cores_proc_stat(window)
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            busy = 0.0
    return max(1, min(cores, int(cores - busy + IDLE_ROUNDING)))


def auto_threads(work, on_host=True):
    """The automatic rule: 1 for host work below ``SMALL_WORK`` multiply-adds; above it the idle cores
    (``idle_cores``), at most one per ``SMALL_WORK`` of work, or None (leave BLAS alone) when that is every
    usable core."""
    if not on_host:
        return None
    if work < SMALL_WORK:
        return 1
    n = min(idle_cores(), int(work // SMALL_WORK))
    return None if n >= usable_cores() else n


def fit_work(model, batch_size, leaves=()):
    """The work of one training step for the rule: ``batch_size`` times the forward multiply-adds of one example
    (``models.forward_macs``, convolutions once per output position). A model without layers (not a
    ``models.Model``) counts ``batch_size`` times its parameters (``leaves``), a dense net's forward pass."""
    from .models import Model, forward_macs

    if isinstance(model, Model):
        return int(batch_size) * sum(forward_macs(model).values())
    return int(batch_size) * sum(int(getattr(a, "size", 1)) for a in leaves)


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

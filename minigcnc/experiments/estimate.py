"""How long a sweep's runs will take to train, said before they start; over an hour, the command asks first.

``cli.run_sweep`` calls ``confirm(name, args, configs, todo)`` after its "N runs: K from the cache" line. When the
runs to train are estimated at more than ``LIMIT_S`` (an hour) on their backend, two lines say how long and how to
go faster (``--backend cupy``, a smaller ``--scale``, fewer ``--seeds``, more ``--jobs``), and then:

- with ``--yes``: the command goes on without asking (for scripts);
- in a terminal: it asks once, ``go on? [y/N]``; anything but y/yes ends it with one line, nothing trained;
- with no terminal (stdin is not a tty: a pipe, cron, nohup, CI) and no ``--yes``: it stops with one line naming
  ``--yes`` (exit status 1). It stops rather than going on because the costly mistake is the silent one: a
  paper-scale command in a script would hold the machine for days before anyone looked, while stopping loses
  nothing (nothing has trained, the cache is as it was) and going on is one flag away.

A missing dataset file is said before the question (``sweep.check_feasible``), so no one agrees to days of
training that cannot start. A remote Dask cluster (``--dask tcp://...``) gets no estimate: its speed is not known
here.

**The cost model** (``sweep_seconds``), from the configs alone, without loading data:

- ``forward_macs``: the multiply-adds of one image through the model (a dense layer ``fan_in x fan_out``, a
  convolution ``out x in x k x k`` at every output position, the head ``p x k``), split into dense and conv work;
- one SGD step: ``3 x batch x forward`` (the forward pass and the two backward products), times
  ``PENALTY_FACTOR`` with a GC penalty (Hutchinson a constant few plain steps, exact about ``1 + p / 4``: fitted to
  penalized steps at ``p = 64``);
- one evaluation: the forward pass over the train, test and target images, plus the exact GC of the two
  evaluation subsets (``p`` backward passes per image for the embedding GC, ``k`` for the logit and directional
  GC); each extra metric group (``extras``) adds ``EXTRA_GC_UNITS`` exact GCs (1 for your own) and
  ``EXTRA_FIXED_S`` seconds, the Hessian trace (``flatness``) ``FLATNESS_PASSES`` forward passes;
- time = multiply-adds / (``EFFICIENCY[kind]`` x the BLAS rate) + a fixed cost per layer and step
  (``STEP_OVERHEAD_S``). The NumPy rate is measured once per process (``host_rate``: a float32 or float64 matrix
  product on one BLAS thread, the best of five 20 ms bursts); CuPy's is an assumed fixed rate
  (``DEVICE_RATE``; not measured: no run on a real GPU yet);
- parallel: ``--jobs`` runs at once on at most the machine's cores, each ``PARALLEL_SLOWDOWN`` times slower than
  alone; a step too big for the one-thread rule (``threads.SMALL_WORK``) gets the idle cores through BLAS; on
  CuPy the runs share one GPU.

The constants below were fitted to timings on a busy 2-core machine with one BLAS thread (the laptop MLP and
convnet steps, a VGG-13 step, one laptop evaluation, and laptop runs trained two at a time beside other work for
``PARALLEL_SLOWDOWN``); what the runs took is in ``figures/REPORT.md``. It is an estimate, to be read as right
within a factor of a few, which is all a decision about an hour against a day needs.
"""
import os
import sys
import time
from functools import lru_cache

LIMIT_S = 3600.0  # above this estimate the command asks first (or stops without a terminal, unless --yes)
EFFICIENCY = {"dense": 0.8, "conv": 0.4}  # the fraction of the matrix-product rate each kind of layer reaches
STEP_OVERHEAD_S = {"host": 60e-6, "device": 100e-6}  # seconds per layer and step beyond the arithmetic
DEVICE_RATE = {"float32": 2e12, "float64": 1e12}  # multiply-adds per second assumed for CuPy (not measured)
SLOW_HOST_RATE = 2e9  # a slow core: an estimate under the limit at this rate skips the measurement
# an extra metric group's cost at one evaluation, in exact GCs of the training evaluation subset (fitted to the
# groups' recorded seconds at laptop scale, ``seconds_<group>`` in the runs)
EXTRA_GC_UNITS = {"gc_estimators": 8.0, "moment_bounds": 0.5, "moment_bounds_gc": 4.0, "layers": 2.0,
                  "agop": 1.0}  # any other (your own): 1
EXTRA_FIXED_S = {"moment_bounds": 0.35, "moment_bounds_gc": 0.7}  # seconds beyond the arithmetic (SDP solves)
AT_ENDS = {"moment_bounds_gc", "agop", "flatness"}  # recorded at a run's first and last evaluation only (measure.AT_ENDS)
FLATNESS_PASSES = 12000  # the Hessian trace: 4 probes x 250 images (convnets; 1000 dense) x ~12 passes
PENALTY_FACTOR = {"hutchinson": lambda p: 3.0, "exact": lambda p: 1.0 + p / 4}
PARALLEL_BLAS = 0.7  # the share of each added core a big step gains through BLAS threads
PARALLEL_SLOWDOWN = 1.4  # runs trained side by side each take longer (shared memory bandwidth): fitted, see above

# input shape, classes, training and test images per class: what the cost depends on, without loading the data
DATASETS = {
    "mnist5k": ((1, 28, 28), 10, 400, 100), "digits": ((1, 8, 8), 10, 144, 36),
    "mnist": ((1, 28, 28), 10, 6000, 1000), "fashion_mnist": ((1, 28, 28), 10, 6000, 1000),
    "cifar10": ((3, 32, 32), 10, 5000, 1000), "cifar100": ((3, 32, 32), 100, 500, 100),
    "cifarfs": ((3, 32, 32), 64, 500, 100), "gaussians": ((1, 1, 32), 10, 400, 100),
}
CIFARFS_TARGET_CLASSES = 20  # its test classes, 600 images each
ROTATIONS = 4  # "<name>_rot": every class at four angles, each its own class


def dataset_size(name):
    """(input shape, classes, training images per class, test images per class) of dataset ``name``."""
    if name.endswith("_rot"):
        shape, k, n_train, n_test = dataset_size(name[: -len("_rot")])
        return shape, ROTATIONS * k, n_train, n_test
    return DATASETS[name]


@lru_cache(maxsize=64)
def _macs(model, hidden, channels, width, activation, input_shape, n_classes):
    from ..models import forward_macs as model_macs
    from .config import RunConfig
    from .prepare import build_model

    config = RunConfig(model=model, hidden=hidden, channels=channels, width=width, activation=activation)
    net = build_model(config, n_classes, input_shape)
    return {**model_macs(net), "layers": len(net.layers) + 1, "embed_dim": net.embed_dim}


def forward_macs(config):
    """Multiply-adds of one image's forward pass through ``config``'s model, by kind of layer.

    {"dense", "conv": multiply-adds, "layers": the body's layers and the head, "embed_dim"}; the model is built
    once per architecture, no data are loaded."""
    shape, k, _, _ = dataset_size(config.dataset)
    k = len(config.classes) or k
    return _macs(config.model, tuple(config.hidden), tuple(config.channels), float(config.width), config.activation,
                 tuple(shape), k)


def _eval_images(config):
    """(images embedded at an evaluation, images whose exact GC is taken) of ``config``."""
    _, k_all, n_train, n_test = dataset_size(config.dataset)
    k = len(config.classes) or k_all
    embedded = k * (n_train + n_test)
    if config.target_classes or config.target_dataset:
        target = config.target_dataset or config.dataset
        _, kt, nt_train, nt_test = dataset_size(target)
        if target == "cifarfs":
            kt, nt_train, nt_test = CIFARFS_TARGET_CLASSES, 600, 0
        embedded += (len(config.target_classes) or kt) * (nt_train + nt_test)
    gc_images = k * (min(config.eval_per_class, n_train) + min(config.eval_per_class, n_test))
    return embedded, gc_images


def run_macs(config):
    """(multiply-adds of one training step, multiply-adds of one evaluation, evaluations) of ``config``."""
    m = forward_macs(config)
    forward = m["dense"] + m["conv"]
    step = 3 * config.batch_size * forward
    if config.gc_reg:
        step *= PENALTY_FACTOR[config.gc_reg_method](m["embed_dim"])
    embedded, gc_images = _eval_images(config)
    _, k_all, _, _ = dataset_size(config.dataset)
    k = len(config.classes) or k_all
    evaluation = embedded * forward + gc_images * (m["embed_dim"] + 2 * k) * forward
    gc_unit = gc_images / 2 * m["embed_dim"] * forward  # one exact GC of the training evaluation subset
    evals = config.steps // config.eval_every + 1 + (config.steps % config.eval_every > 0)
    for name in config.extras:
        share = min(1.0, 2 / evals) if name in AT_ENDS else 1.0  # recorded at the first and last evaluation only
        if name == "flatness":
            evaluation += share * FLATNESS_PASSES * (1 if m["conv"] else 4) * forward  # 250 or 1,000 images
        else:
            evaluation += share * EXTRA_GC_UNITS.get(name, 1.0) * gc_unit
    return step, evaluation, evals


@lru_cache(maxsize=4)
def host_rate(dtype):
    """Multiply-adds per second of a ``dtype`` matrix product on one BLAS thread here, measured once per process.

    The best of five bursts of 20 ms, so that a moment of load beside it does not make every run look slower."""
    import numpy as onp

    from ..threads import blas_limit

    a = onp.random.default_rng(0).random((256, 384)).astype(dtype)
    b = onp.random.default_rng(1).random((384, 384)).astype(dtype)
    best = 0.0
    with blas_limit(1):
        a @ b
        for _ in range(5):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 0.02:
                a @ b
                n += 1
            best = max(best, n * a.shape[0] * a.shape[1] * b.shape[1] / (time.perf_counter() - t0))
    return best


def run_seconds(config, rate=None):
    """Estimated seconds to train and evaluate ``config`` on one core (NumPy) or its GPU (CuPy).

    ``rate``: multiply-adds per second of a matrix product (default: ``host_rate`` measured here for NumPy,
    ``DEVICE_RATE`` for any device backend)."""
    on_host = config.backend == "numpy"
    if rate is None:
        rate = host_rate(config.dtype) if on_host else DEVICE_RATE[config.dtype]
    m = forward_macs(config)
    total = m["dense"] + m["conv"]
    seconds_per_mac = (m["dense"] / EFFICIENCY["dense"] + m["conv"] / EFFICIENCY["conv"]) / (total * rate)
    step, evaluation, evals = run_macs(config)
    overhead = config.steps * m["layers"] * STEP_OVERHEAD_S["host" if on_host else "device"]
    overhead += sum(EXTRA_FIXED_S.get(name, 0.0) * (min(2, evals) if name in AT_ENDS else evals)
                    for name in config.extras)
    return (config.steps * step + evals * evaluation) * seconds_per_mac + overhead


def sweep_seconds(configs, jobs=1, cores=None, rate=None):
    """Estimated wall seconds to train ``configs``, ``jobs`` runs at once (NumPy) or one after another (CuPy).

    ``cores``: the machine's (default: this one's); ``rate`` as for ``run_seconds``. On CuPy the runs share one
    GPU."""
    configs = list(configs)
    if not configs:
        return 0.0
    cores = cores or os.cpu_count() or 1
    seconds = [run_seconds(c, rate) for c in configs]
    if any(c.backend != "numpy" for c in configs):
        return float(sum(seconds))
    lanes = max(1, min(jobs, len(configs), cores))
    if lanes > 1:
        seconds = [PARALLEL_SLOWDOWN * s for s in seconds]
    from ..threads import SMALL_WORK

    big = all(run_macs(c)[0] / 3 >= SMALL_WORK for c in configs)  # (the rule counts the forward work)
    speed = max(1.0, 1 + PARALLEL_BLAS * (cores / lanes - 1)) if big else 1.0  # BLAS threads on the idle cores
    return max(sum(seconds) / (lanes * speed), max(seconds) / speed)


def duration(seconds):
    """'about 40 minutes', 'about 3.5 hours', 'about 12 days': an estimate's size, no false digits."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} seconds"
    if seconds < 5400:
        return f"about {round(seconds / 60)} minutes"
    if seconds < 2 * 86400:
        hours = seconds / 3600
        return f"about {hours:.1f} hours" if hours < 10 else f"about {round(hours)} hours"
    return f"about {round(seconds / 86400)} days"


def faster(args, todo):
    """The ways to go faster that apply to this command, as one phrase."""
    ways = []
    if any(c.backend == "numpy" for c in todo):
        ways.append("--backend cupy (a CUDA GPU)")
    scale = getattr(args, "scale", None)
    if scale == "paper":
        ways.append("--scale laptop (minutes on 2 cores)")
    elif scale == "laptop":
        ways.append("--scale tiny (seconds)")
    if len({c.seed for c in todo}) > 1:
        ways.append("fewer --seeds")
    cores = os.cpu_count() or 1
    if any(c.backend == "numpy" for c in todo) and getattr(args, "jobs", 1) < min(cores, len(todo)):
        ways.append(f"--jobs {min(cores, len(todo))}")
    return ", ".join(ways[:-1]) + (" or " if len(ways) > 1 else "") + ways[-1] if ways else "a smaller sweep"


def _parallel(args):
    """Runs at once: ``--jobs``, or the workers of ``--dask local:N``; None for a remote cluster."""
    address = getattr(args, "dask", None)
    if not address:
        return getattr(args, "jobs", 1)
    if address == "local":
        return os.cpu_count() or 1
    if address.startswith("local:"):
        return int(address.split(":", 1)[1])
    return None


def confirm(name, args, configs, todo, stdin=None):
    """Say the estimate of the runs ``todo`` before they train, and ask first when it is over ``LIMIT_S``.

    ``todo``: the runs of ``configs`` left to train; see the module docstring for --yes and no terminal. Returns
    the estimate in seconds (None: none made, or short at a slow core's speed, or a remote cluster); raises
    SystemExit with one line when the command is not to go on."""
    todo = list(todo)
    jobs = _parallel(args)
    if not todo or jobs is None:
        return None
    if sweep_seconds(todo, jobs, rate=SLOW_HOST_RATE if all(c.backend == "numpy" for c in todo) else None) < LIMIT_S:
        return None  # short even on a slow core: no need to time this one
    seconds = sweep_seconds(todo, jobs)
    if seconds < LIMIT_S:
        return seconds
    from .sweep import check_feasible

    check_feasible(configs, todo=todo, missing_ok=bool(getattr(args, "dask", None)))  # a missing file first
    backends = "/".join(sorted({c.backend for c in todo}))
    at_once = f", {min(jobs, len(todo))} at a time" if min(jobs, len(todo)) > 1 and backends == "numpy" else ""
    speed = "this machine's measured speed" if backends == "numpy" else "an assumed GPU speed (not measured)"
    print(f"{name}: estimated training time {duration(seconds)} for {len(todo)} run{'s' * (len(todo) > 1)} on "
          f"{backends}{at_once} (an estimate from the runs' multiply-adds and {speed}, right within a factor of a few)",
          file=sys.stderr)
    print(f"{name}: to go faster: {faster(args, todo)}", file=sys.stderr)
    if getattr(args, "yes", False):
        print(f"{name}: going on (--yes)", file=sys.stderr)
        return seconds
    stdin = sys.stdin if stdin is None else stdin
    if stdin is None or not stdin.isatty():
        raise SystemExit(f"{name}: not started: {duration(seconds)} of training and no terminal to ask; give --yes "
                         "to go on without asking")
    print(f"{name}: go on? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise SystemExit(f"{name}: not started, nothing trained (--yes goes on without asking)")
    return seconds

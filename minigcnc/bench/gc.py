"""`python -m minigcnc.bench.gc [--quick]`: the speed of exact GC against three baselines, in one run.

Exact embedding GC (float64, mean of ||J||_F^2) of two models on MNIST inputs (the embedded ``mnist5k``,
standardized, with a small jitter; random inputs if it cannot be loaded), random He-normal parameters:

- MLP [784, 256, 256, 64] on 1,000 inputs;   - ``convnet((1, 28, 28), 10)`` (p = 128) on 256 inputs.

Methods, all measured in the same process:

(a) ``gc.jacobian_sq_norms``: batched backward propagation of the identity with jacobian_passes.py's exact savings (top
    dense layer without GEMM, rows of inactive top units dropped, first-layer Gram), in cache-sized passes
    run by parallel threads;
(b) autograd ``make_vjp`` of the batched embedding with one one-hot cotangent per output coordinate
    (one forward, p backward passes over the whole batch);
(c) per-sample ``autograd.jacobian`` on a subset of inputs, scaled to the full count;
(d) JAX ``jit(vmap(jacrev))`` when ``jax`` is importable (the ``[bench]`` extra), over fixed-size sample
    chunks to bound memory; compile time (the first call) is reported separately and excluded.

Targets: (a) <= 0.5x (d) for the MLP and <= 1.0x (d) for the convnet, and (a) >= 20x faster than (c).
``bench_gc(report, quick=False)`` is the section called by ``python -m minigcnc.bench``; ``report(name,
seconds, note)`` receives every timing. Times are wall-clock medians of the repeats (the notes and the
"cpu" rows add this process's CPU seconds, a steadier measure when other jobs share the machine); compare
ratios, measured in the same run.
"""
import argparse
import statistics
import time

import numpy as onp

from .. import gc
from ..models import convnet, mlp

TARGETS = {"mlp": 0.5, "convnet": 1.0}  # (a) / (d) at most
MIN_SPEEDUP_PER_SAMPLE = 20.0  # (c) / (a) at least


def _inputs(n, seed=0):
    """n standardized MNIST images (1, 28, 28) as float64, or standard normal ones if mnist5k is unavailable.

    A N(0, 0.01^2) jitter is added: MNIST's constant background makes exact ties inside max-pooling windows,
    where the Jacobian is undefined and a batched and a per-sample pass may break a tie differently.
    """
    rng = onp.random.default_rng(seed)
    try:
        from ..data import load

        X, _ = load("mnist5k", "train")
        X = onp.asarray(X, dtype=onp.float64)
        X = (X - X.mean()) / X.std()
        X, source = X[rng.choice(len(X), size=n, replace=False)], "mnist5k + jitter"
    except Exception:  # noqa: BLE001 - the benchmark still runs on random inputs
        X, source = rng.standard_normal((n, 1, 28, 28)), "random normal"
    return X + 0.01 * rng.standard_normal(X.shape), source


def _median_time(fn, repeats):
    """(median wall seconds, median CPU seconds of this process, fn's last result) over ``repeats`` calls."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), out


# --------------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------------
def gc_make_vjp(model, params, X):
    """Exact GC by autograd: one forward of the batched embedding, one backward per output coordinate."""
    from autograd import make_vjp

    Xf = X.reshape(X.shape[0], -1)
    vjp, Z = make_vjp(lambda x: model.embed(params, x))(Xf)
    total = 0.0
    for j in range(Z.shape[1]):
        u = onp.zeros_like(Z)
        u[:, j] = 1.0
        g = vjp(u)  # (N, D): row j of every sample's Jacobian
        total += float(onp.sum(g * g))
    return total / X.shape[0]


def gc_per_sample_jacobian(model, params, X):
    """Exact GC by ``autograd.jacobian`` of the single-sample embedding (p backward passes per sample)."""
    from autograd import jacobian

    jac = jacobian(lambda x: model.embed(params, x[None])[0])
    Xf = X.reshape(X.shape[0], -1)
    return float(onp.mean([onp.sum(jac(x) ** 2) for x in Xf]))


def _jax():
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)  # float64, as the other methods
    return jax


def _jax_embed_fn(jax, kind):
    """The embedding of one flattened input as a JAX function of the same parameters (mlp or convnet)."""
    jnp = jax.numpy

    def mlp_embed(params, x):
        for W, b in params[:-1]:
            x = jax.nn.relu(x @ W + b)
        return x

    def conv_block(x, W, b):
        y = jax.lax.conv_general_dilated(x, W, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
        y = jax.nn.relu(y + b[None, :, None, None])
        return jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def convnet_embed(params, x):
        x = x.reshape(1, 1, 28, 28)
        x = conv_block(x, *params[0])
        x = conv_block(x, *params[2])
        W, b = params[5]
        return jax.nn.relu(x.reshape(-1) @ W + b)

    return mlp_embed if kind == "mlp" else convnet_embed


def jax_gc_function(jax, kind, params):
    """(jitted f(X_chunk) -> sum of ||J||_F^2 over the chunk, JAX params) for ``jit(vmap(jacrev))``."""
    jnp = jax.numpy
    embed = _jax_embed_fn(jax, kind)
    jparams = jax.tree_util.tree_map(jnp.asarray, [tuple(p) for p in params])
    per_sample = jax.vmap(jax.jacrev(embed, argnums=1), in_axes=(None, 0))

    @jax.jit
    def f(p, X):
        return jnp.sum(per_sample(p, X) ** 2)

    return (lambda X: f(jparams, X)), jparams, embed


# --------------------------------------------------------------------------------------------------
def _problems(quick):
    n_mlp, n_conv = (200, 32) if quick else (1000, 256)
    X_all, source = _inputs(max(n_mlp, n_conv))
    return [
        dict(kind="mlp", model=mlp([784, 256, 256, 64], 10), X=X_all[:n_mlp].reshape(n_mlp, -1), chunk=n_mlp,
             subset=5 if quick else 20, source=source),
        dict(kind="convnet", model=convnet((1, 28, 28), 10), X=X_all[:n_conv], chunk=16 if quick else 32,
             subset=2 if quick else 10, source=source),
    ]


def bench_gc(report, quick=False):
    """Time exact GC by (a) minigcnc, (b) make_vjp, (c) per-sample autograd.jacobian, (d) JAX; report each.

    Returns a dict {kind: {method: seconds, ...}} with the ratios and whether the targets were met.
    """
    jax = _jax()
    results = {}
    for prob in _problems(quick):
        kind, model, X = prob["kind"], prob["model"], prob["X"]
        N = X.shape[0]
        params = model.init(0, dtype="float64", backend="numpy")
        tag = f"gc exact {model.name} N={N}"
        row, cpu = {}, {}
        # repeats of (a) and (d); the slow baselines run once on the convnet (minutes each)
        repeats = 1 if quick else (3 if kind == "mlp" else 2)

        row["ours"], cpu["ours"], ref = _median_time(
            lambda: float(gc.jacobian_sq_norms(model, params, X).mean()), repeats)
        report(f"{tag}: (a) minigcnc jacobian_sq_norms", row["ours"],
               f"cpu {cpu['ours']:.2f} s; GC={ref:.6g}, inputs {prob['source']}")

        reps_b = 1 if kind == "convnet" else repeats
        row["make_vjp"], cpu["make_vjp"], val = _median_time(lambda: gc_make_vjp(model, params, X), reps_b)
        report(f"{tag}: (b) autograd make_vjp, {model.embed_dim} one-hot backward", row["make_vjp"],
               f"cpu {cpu['make_vjp']:.2f} s; {row['make_vjp'] / row['ours']:.1f}x (a); "
               f"rel diff {abs(val - ref) / ref:.1e}")

        n_sub = prob["subset"]
        t, c, val = _median_time(lambda: gc_per_sample_jacobian(model, params, X[:n_sub]), 1)
        row["per_sample"], cpu["per_sample"] = t * N / n_sub, c * N / n_sub
        sub_ref = float(gc.jacobian_sq_norms(model, params, X[:n_sub]).mean())
        report(f"{tag}: (c) per-sample autograd.jacobian ({n_sub} inputs, scaled)", row["per_sample"],
               f"cpu {cpu['per_sample']:.2f} s; {row['per_sample'] / row['ours']:.1f}x (a); "
               f"rel diff {abs(val - sub_ref) / sub_ref:.1e}")

        if jax is None:
            report(f"{tag}: (d) JAX jit(vmap(jacrev))", float("nan"), "skipped: jax not installed (pip install jax)")
        else:
            f, _, _ = jax_gc_function(jax, kind, params)
            c = prob["chunk"]
            chunks = [X[s:s + c].reshape(-1, model.input_dim) for s in range(0, N, c)]
            t0 = time.perf_counter()
            f(chunks[0]).block_until_ready()
            row["jax_compile"] = time.perf_counter() - t0

            def run_jax():
                parts = [f(Xc) for Xc in chunks]
                return float(sum(float(p) for p in parts)) / N

            row["jax"], cpu["jax"], val = _median_time(run_jax, repeats)  # the median of 2 is their mean
            report(f"{tag}: (d) JAX jit(vmap(jacrev)), chunks of {c}", row["jax"],
                   f"cpu {cpu['jax']:.2f} s; (a) = {row['ours'] / row['jax']:.2f}x JAX (target <= {TARGETS[kind]}); "
                   f"rel diff {abs(val - ref) / ref:.1e}")
            report(f"{tag}: (d) JAX compile (first call, excluded)", row["jax_compile"], "")
        row["cpu"] = cpu
        row["ratio_jax"] = row["ours"] / row["jax"] if "jax" in row else None
        row["speedup_per_sample"] = row["per_sample"] / row["ours"]
        row["meets_jax_target"] = None if row["ratio_jax"] is None else row["ratio_jax"] <= TARGETS[kind]
        row["meets_per_sample_target"] = row["speedup_per_sample"] >= MIN_SPEEDUP_PER_SAMPLE
        results[kind] = row
    return results


def _table(results):
    cols = [("ours", "(a) minigcnc"), ("make_vjp", "(b) make_vjp"), ("per_sample", "(c) per-sample"),
            ("jax", "(d) JAX"), ("jax_compile", "JAX compile")]
    lines = [f"{'model':<10s}" + "".join(f"{name:>16s}" for _, name in cols) + f"{'(a)/(d)':>10s}{'(c)/(a)':>10s}"]
    for kind, row in results.items():
        cells = "".join(f"{row[k]:>15.2f}s" if row.get(k) is not None else f"{'-':>16s}" for k, _ in cols)
        rj = f"{row['ratio_jax']:.2f}" if row["ratio_jax"] is not None else "-"
        lines.append(f"{kind:<10s}{cells}{rj:>10s}{row['speedup_per_sample']:>9.0f}x")
    for kind, row in results.items():
        c = row["cpu"]
        cj = f"{c['ours'] / c['jax']:.2f}" if "jax" in c else "-"
        lines.append(f"{kind + ' cpu':<10s}" + "".join(f"{c[k]:>15.2f}s" if k in c else f"{'-':>16s}" for k, _ in cols)
                     + f"{cj:>10s}{c['per_sample'] / c['ours']:>9.0f}x")
    for kind, row in results.items():
        jt = "n/a (no jax)"
        if row["meets_jax_target"] is not None:
            jt = ("met" if row["meets_jax_target"] else "MISSED") + f" ({row['ratio_jax']:.2f} vs <= {TARGETS[kind]})"
        pt = ("met" if row["meets_per_sample_target"] else "MISSED") + f" ({row['speedup_per_sample']:.0f}x vs >= 20x)"
        lines.append(f"target {kind}: JAX ratio {jt}; per-sample speedup {pt}")
    return "\n".join(lines)


def main(argv=None):
    """Command line: run ``bench_gc`` and print every timing, then the table of ratios."""
    p = argparse.ArgumentParser(prog="python -m minigcnc.bench.gc", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller problems (a smoke run)")
    args = p.parse_args(argv)

    def report(name, seconds, note=""):
        print(f"  {name:<72s} {seconds:9.3f} s  {note}", flush=True)

    results = bench_gc(report, quick=args.quick)
    print()
    print(_table(results))
    return results


if __name__ == "__main__":
    main()

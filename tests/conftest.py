"""Shared test helpers: an own cache per test and no MINIGCNC_* variables, the strict stand-in device on the path,
a seeded rng, and a finite-difference oracle."""
import os
import sys

import numpy as np
import pytest
import autograd.numpy as anp
from autograd import make_vjp
from autograd.scipy.special import logsumexp

sys.path.insert(0, os.path.dirname(__file__))  # so that `import strict_device` works

from minigcnc import models  # noqa: E402
from minigcnc.backend import tree_leaves, tree_map, tree_unflatten  # noqa: E402

SMALL = {  # laptop-fast versions of each model kind: together they use every layer
    "mlp-relu": lambda: models.mlp([12, 8, 6], 3),
    "mlp-tanh": lambda: models.mlp([12, 8, 6], 3, activation="tanh"),
    "convnet": lambda: models.convnet((1, 8, 8), 3, channels=(2, 3), hidden=(5,)),
    "vgg11": lambda: models.vgg("vgg11", (3, 8, 8), 3, width=1 / 16, hidden=64),
    "vgg13": lambda: models.vgg("vgg13", (3, 8, 8), 3, width=1 / 16, hidden=64),
    "resnet18": lambda: models.resnet18((3, 8, 8), 3, width=1 / 16),
}


def perturbed_params(model, rng, scale=0.1):
    """The model's initial parameters plus Gaussian noise of ``scale`` (so ReLUs are not all at a kink)."""
    return tree_map(lambda a: a + scale * rng.standard_normal(np.shape(a)), model.init(0))


@pytest.fixture(scope="session", autouse=True)
def no_minigcnc_environment():
    """No ``MINIGCNC_*`` variable of the caller's shell reaches the tests (restored afterwards)."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("MINIGCNC_")}
    yield
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty result cache (``$MINIGCNC_CACHE``), so no two tests share runs."""
    for k in [k for k in os.environ if k.startswith("MINIGCNC_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("MINIGCNC_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def inner(a, b):
    """<a, b> summed over every leaf of two matching trees."""
    return float(sum(np.vdot(np.asarray(x), np.asarray(y)) for x, y in zip(tree_leaves(a), tree_leaves(b))))


def vjp_and_fd(f, x, rng, eps=1e-6):
    """(<u, J v> by central differences, <J^T u, v> by the VJP) for random directions v and cotangents u.

    f maps a tree of float64 arrays x to one array; the two numbers agree when the VJP of f is right.
    """
    vjp, y = make_vjp(f)(x)
    u = rng.standard_normal(np.shape(y))
    v = tree_unflatten(x, [rng.standard_normal(np.shape(a)) for a in tree_leaves(x)])
    shift = lambda s: tree_unflatten(x, [a + s * eps * d for a, d in zip(tree_leaves(x), tree_leaves(v))])  # noqa: E731
    fd = float(np.sum(u * (np.asarray(f(shift(1))) - np.asarray(f(shift(-1))))) / (2 * eps))
    return fd, inner(vjp(u), v)


def assert_vjp_matches_fd(f, x, rng, rtol=1e-6, repeats=2):
    """Central finite differences and the VJP of f agree along ``repeats`` random (v, u) pairs."""
    for _ in range(repeats):
        fd, exact = vjp_and_fd(f, x, rng)
        assert abs(fd - exact) <= rtol * max(1.0, abs(exact)), (fd, exact)


def check_against_finite_differences(f, args, rng, argnums=None):
    """``assert_vjp_matches_fd`` for each argument in ``argnums`` (default: all) of ``f(*args)``."""
    argnums = range(len(args)) if argnums is None else argnums
    for i in argnums:
        def fi(a, i=i):
            full = list(args)
            full[i] = a
            return f(*full)

        assert_vjp_matches_fd(fi, args[i], rng)


# ---- independent references of the primitives (autograd.numpy), shared by test_ops and test_fused ----------
def conv2d_loop(x, W, stride=1, padding=0):
    """Cross-correlation as a sum over kernel offsets (i, j) of shifted, strided slices times W[:, :, i, j]."""
    O, C, kh, kw = W.shape
    x = anp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), mode="constant")
    Ho, Wo = (x.shape[2] - kh) // stride + 1, (x.shape[3] - kw) // stride + 1
    out = 0.0
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + stride * (Ho - 1) + 1 : stride, j : j + stride * (Wo - 1) + 1 : stride]
            out = out + anp.einsum("nchw,oc->nohw", patch, W[:, :, i, j])
    return out


def maxpool_reshape(x, s):
    """Max-pooling by reshaping (windows of s x s; a remainder row/column dropped), in autograd.numpy."""
    N, C, H, W = x.shape
    x = x[:, :, : H // s * s, : W // s * s]
    return anp.max(anp.reshape(x, (N, C, H // s, s, W // s, s)), axis=(3, 5))


def cross_entropy_logsumexp(z, y):
    """Mean cross-entropy of logits z (N, K) and labels y by logsumexp, in autograd.numpy."""
    return anp.mean(logsumexp(z, axis=1) - z[np.arange(z.shape[0]), y])

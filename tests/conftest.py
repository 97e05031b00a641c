"""Shared test helpers: an own cache per test and no MINIGCNC_* variables, the strict stand-in device on the path,
a seeded rng, and a finite-difference oracle."""
import os
import sys

import numpy as np
import pytest
from autograd import make_vjp

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

"""minigcnc: geometric complexity and neural collapse in transfer learning, in NumPy and autograd.

A small, exact, readable reimplementation of Munn, Dherin & Gonzalvo (NeurIPS 2024, arXiv 2405.15706):
train small networks, measure the geometric complexity (GC) of their embeddings and the neural collapse (NC)
of their classes, and watch whether lower GC brings more collapse and better few-shot transfer.

    from minigcnc import load, mlp, fit, geometric_complexity, cdnv
    python -m minigcnc            # lists the figures and how to run each

The GC, collapse, bounds, few-shot and experiment names are imported on first use (``import minigcnc`` stays
light); ``dir(minigcnc)`` lists them, and every submodule (``minigcnc.gc``, ``minigcnc.collapse``, ...) is
reachable as an attribute after ``import minigcnc``.
"""
import importlib

from .startup import quiet_interrupt_while_starting

quiet_interrupt_while_starting()  # first: Ctrl-C during the imports below ends a figure command in one line

__version__ = "0.1.0"

from .backend import get_xp, set_backend, get_backend, to_numpy  # noqa: E402,F401
from .models import Model, mlp, convnet, vgg, resnet18, build  # noqa: E402,F401
from .data import load  # noqa: E402,F401
from .train import fit, FitResult, sgd_step  # noqa: E402,F401

# name -> the module that defines it, imported on first use
LAZY = {
    "gc": ["reference_gc", "input_jacobian", "jacobian_sq_norms", "geometric_complexity", "class_gc", "gc_penalty",
           "make_gc_penalty", "directional_gc", "gc_estimator_variance"],
    "collapse": ["reference_cdnv", "class_means", "class_variances", "cdnv_matrix", "cdnv", "geometric_collapse", "nc1",
                 "nc2_equinorm", "nc2_equiangularity", "nc2_maxangle", "nc3_self_duality", "nc4_ncc_mismatch",
                 "ncc_fit", "ncc_predict", "ncc_error"],
    "bounds": ["poincare_gaussian", "poincare_constants", "ncc_error_bound", "ncc_error_bound_gc",
               "ncc_error_bound_directional_gc", "nc_gc_bound", "cdnv_bound_gc", "implied_rho", "BoundResult"],
    "fewshot": ["reference_episode_accuracy", "episodes", "evaluate", "evaluate_embeddings", "FewShotResult"],
    "experiments.config": ["RunConfig"],
    "experiments.run": ["run"],
    "experiments.sweep": ["run_many"],
}
SUBMODULES = ("backend", "ops", "layers", "models", "train", "data", "checks", "threads", "jacobians", "gc",
              "classes", "collapse", "bounds", "fewshot", "probe", "experiments", "fused", "fast_step", "jacobian_passes",
              "registry", "reproduce", "bench")
_HOME = {name: module for module, names in LAZY.items() for name in names}


def __getattr__(name):
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    if name in SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'minigcnc' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_HOME) | set(SUBMODULES))

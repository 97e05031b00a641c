"""minigcnc: geometric complexity and neural collapse in transfer learning, in NumPy and autograd.

A small, exact, readable reimplementation of Munn, Dherin & Gonzalvo (NeurIPS 2024, arXiv 2405.15706):
train small networks, measure the geometric complexity (GC) of their embeddings and the neural collapse (NC)
of their classes, and watch lower GC bring more collapse and better few-shot transfer.

    from minigcnc import load, mlp, fit, geometric_complexity, cdnv
    python -m minigcnc            # lists the figures and how to run each
"""
__version__ = "0.1.0"

from .backend import get_xp, set_backend, get_backend, to_numpy  # noqa: F401
from .models import Model, mlp, convnet, vgg, resnet18, build  # noqa: F401
from .data import load  # noqa: F401
from .train import fit, FitResult  # noqa: F401


def __getattr__(name):
    # GC, collapse, bounds and few-shot are imported on first use so `import minigcnc` stays light
    import importlib

    homes = {
        "gc": ["input_jacobian", "jacobian_sq_norms", "geometric_complexity", "class_gc", "gc_penalty",
               "make_gc_penalty", "directional_gc"],
        "collapse": ["class_means", "class_variances", "cdnv_matrix", "cdnv", "geometric_collapse", "nc1",
                     "nc2_equinorm", "nc2_equiangularity", "nc2_maxangle", "nc3_self_duality", "nc4_ncc_mismatch",
                     "ncc_fit", "ncc_predict", "ncc_error"],
        "bounds": ["poincare_gaussian", "poincare_constants", "ncc_error_bound", "ncc_error_bound_gc",
                   "ncc_error_bound_directional_gc", "nc_gc_bound", "cdnv_bound_gc", "implied_rho", "BoundResult"],
        "fewshot": ["episodes", "evaluate", "evaluate_embeddings", "FewShotResult"],
    }
    for module, names in homes.items():
        if name in names:
            return getattr(importlib.import_module(f".{module}", __name__), name)
    raise AttributeError(f"module 'minigcnc' has no attribute {name!r}")

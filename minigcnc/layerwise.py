"""Neural collapse and geometric complexity at every hidden layer, not only at the embedding.

For a model whose body is ``f_L(... f_1(x))`` and a hidden (dense) layer l, ``h_l(x) = f_l(... f_1(x))`` is the
map from the input to that layer's post-activation features (``h_L = g``, the embedding). At every such layer,
on the same images (docs/theory.md#per-layer-collapse-and-gc):

- ``cdnv``: the CDNV of the features ``h_l(X)`` (``collapse.cdnv``, the paper's NC at layer l);
- ``nc1``: Papyan's ``(1/k) tr(Sigma_W Sigma_B^+)`` (``collapse.nc1``: the pseudo-inverse keeps only eigenvalues
  of Sigma_B above ``max(k, p) eps lambda_max``, so at most its k-1 nonzero ones, never the round-off ones of a
  rank-deficient Sigma_B; never negative). ``k nc1 = tr(Sigma_W Sigma_B^+)`` is He & Su's D_l (2023, "law of
  data separation": log D_l falls linearly in l in a trained network);
- ``gc``: the exact GC of ``h_l`` (``gc.geometric_complexity`` of the model truncated after layer l: the same
  pull-back, stopped at that layer).

Layer 0 is the input itself (``h_0 = identity``, flattened: its GC is D). ``hidden_layers(model)``: the
indices of the body layers that count (the dense ones; a convnet's convolutions are skipped).
``layer_features``, ``layer_gc`` and ``layer_metrics`` (one dict per layer, optionally with the CDNV and few-shot
NCC accuracy of unseen classes, ``fewshot.evaluate_embeddings``) compute them.
"""
from functools import lru_cache

import numpy as onp

from . import collapse, fewshot, gc
from .backend import get_xp, to_numpy
from .models import Model


def hidden_layers(model):
    """The indices (into ``model.layers``) of the hidden layers measured: every dense layer, in order."""
    out = [i for i, layer in enumerate(model.layers) if layer.kind == "dense"]
    if not out:
        raise ValueError(f"{model.name} has no dense hidden layer to measure (per-layer metrics need flat features)")
    return out


@lru_cache(maxsize=256)
def _truncated(model, i):
    """The model cut after body layer i (with a head of the right shape, never used for GC)."""
    return Model(f"{model.name}[:{i + 1}]", model.input_shape, model.layers[: i + 1], model.n_classes)


def _truncated_params(model, params, i):
    W, b = params[-1]
    xp = get_xp(W)
    head = (xp.zeros((_truncated(model, i).embed_dim, model.n_classes), dtype=W.dtype), b)
    return list(params[: i + 1]) + [head]


def layer_features(model, params, X):
    """Return the host features ``h_l(X)`` (N, width_l) of every hidden layer l (``hidden_layers``), in order."""
    x = model.check_input(X)
    wanted, out = set(hidden_layers(model)), []
    for i, (layer, p) in enumerate(zip(model.layers, params[:-1])):
        x = layer.apply(p, x)[0]
        if i in wanted:
            out.append(onp.asarray(to_numpy(x)).reshape(x.shape[0], -1))
    return out


def layer_gc(model, params, X):
    """Return the exact GC of ``h_l`` on X for every hidden layer l, host float64 (L,) (``gc.geometric_complexity``)."""
    return onp.array([gc.geometric_complexity(_truncated(model, i), _truncated_params(model, params, i), X)
                      for i in hidden_layers(model)])


def layer_metrics(model, params, X, y, *, X_target=None, y_target=None, fewshot_episodes=0, seed=0, with_gc=True):
    """Return one dict per layer, layer 0 (the inputs) first: ``layer``, ``width``, ``cdnv``, ``nc1``, ``gc``.

    All on the same images (X, y); ``gc`` of layer 0 is D (the identity's). With ``X_target, y_target`` (images of
    unseen classes) also ``target_cdnv`` and, with ``fewshot_episodes``, ``fewshot5`` / ``fewshot5_ci95``: 5-way
    5-shot NCC accuracy of the layer's features (15 queries, episodes drawn from ``seed``, the same episodes at
    every layer). A metric that cannot be computed (coincident class means) is NaN.
    """
    def safe(fn):
        try:
            return float(fn())
        except (ValueError, FloatingPointError, onp.linalg.LinAlgError):
            return float("nan")

    Xc = model.check_input(X)
    y = onp.asarray(to_numpy(y))
    feats = [onp.asarray(to_numpy(Xc)).reshape(Xc.shape[0], -1)] + layer_features(model, params, Xc)
    gcs = [float(model.input_dim)] + (layer_gc(model, params, Xc).tolist() if with_gc else [float("nan")] * (len(feats) - 1))
    target = None
    if X_target is not None:
        Xt = model.check_input(X_target)
        target = [onp.asarray(to_numpy(Xt)).reshape(Xt.shape[0], -1)] + layer_features(model, params, Xt)
        yt = onp.asarray(to_numpy(y_target))
    out = []
    for l, Z in enumerate(feats):
        rec = {"layer": l, "width": int(Z.shape[1]), "cdnv": safe(lambda: collapse.cdnv(Z, y)),
               "nc1": safe(lambda: collapse.nc1(Z, y)), "gc": gcs[l]}
        if target is not None:
            Zt = target[l]
            rec["target_cdnv"] = safe(lambda: collapse.cdnv(Zt, yt))
            if fewshot_episodes:
                res = fewshot.evaluate_embeddings(Zt, yt, ways=min(5, len(onp.unique(yt))), shots=5, queries=15,
                                                  n_episodes=fewshot_episodes, rng=seed)
                rec["fewshot5"], rec["fewshot5_ci95"] = float(res.mean), float(res.ci95)
        out.append(rec)
    return out

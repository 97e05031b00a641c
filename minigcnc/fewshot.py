"""Few-shot transfer: k-way n-shot episodes and nearest-class-centre accuracy on frozen embeddings.

The protocol of docs/theory.md#transfer [our choice, community standard] for the transfer claim of Munn, Dherin,
Gonzalvo 2024 (Props. 4.2-4.3, Figure 4) and Galanti, Gyorgy, Hutter 2022: from the target classes draw
``n_episodes`` episodes of ``ways`` classes (without replacement), ``shots`` support and ``queries`` query
images per class (support and query disjoint), classify the queries by the nearest support-class mean (NCC)
in the frozen embedding, and report the mean accuracy with ``ci95 = 1.96 sd / sqrt(n_episodes)`` together with
the target NC (the CDNV of the embeddings over all the target classes).

Both classifiers are computed for a block of episodes at once (``evaluate_embeddings``): NCC as one batched
computation on the embeddings' device, on the raw features (the paper's); the logistic-regression probe by
``probe.fit_logistic``, an exact batched Newton solver of scikit-learn's ``LogisticRegression()`` objective, on the host,
by default on L2-normalized features (each embedding divided by its Euclidean norm: the usual few-shot protocol,
which makes the probe's C = 1 mean the same thing whatever the scale of the embedding). With ``groups`` (e.g. the
digit of each rotated-digit class) an episode draws its classes from distinct groups.
"""
from dataclasses import dataclass

import numpy as onp

from . import checks
from .backend import get_xp, is_device_array, to_numpy
from .classes import Classes, as_features, as_labels
from .collapse import cdnv
from .probe import fit_logistic

NCC_BLOCK = 1000  # most episodes per batched NCC computation
NCC_HOST_BYTES = 4 * 2**20  # on the host, NCC blocks of about this many gathered bytes (cache-sized: faster)
BLOCK_BYTES = 200 * 2**20  # rough bound on the working memory of one block of episodes


@dataclass(frozen=True)
class FewShotResult:
    """Few-shot accuracy: ``mean`` and ``ci95`` over episodes, ``per_episode`` (n_episodes,), ``target_nc``."""

    mean: float
    ci95: float
    per_episode: onp.ndarray
    target_nc: float

    def __str__(self):
        return f"accuracy {self.mean:.4f} +- {self.ci95:.4f} ({len(self.per_episode)} episodes), target NC {self.target_nc:.4g}"


def reference_episode_accuracy(Z, support_idx, support_labels, query_idx, query_labels):
    """One episode's NCC accuracy from its definition, in NumPy on the host: the support mean of each class,
    each query to its nearest mean (ties to the lowest class), the fraction right. The arguments are one
    episode of ``episodes``; ``evaluate_embeddings`` (batched over episodes) gives the same accuracies (at a
    query exactly equidistant from two means its rounding may pick either)."""
    Z = onp.asarray(to_numpy(Z), dtype=onp.float64)
    means = onp.array([Z[support_idx[support_labels == c]].mean(0) for c in range(support_labels.max() + 1)])
    d2 = ((Z[query_idx][:, None, :] - means[None, :, :]) ** 2).sum(2)  # (queries, ways)
    return float(onp.mean(onp.argmin(d2, axis=1) == query_labels))


def episodes(y, *, ways=5, shots=5, queries=15, n_episodes=600, rng, groups=None):
    """Return an iterator over few-shot episodes ``(support_idx, support_labels, query_idx, query_labels)``.

    Each episode picks ``ways`` distinct classes of ``y`` uniformly without replacement (with ``groups``, an
    integer array with ``groups[label]`` the group of class ``label``: ``ways`` distinct groups uniformly without
    replacement, then one class of each group uniformly), then for each of them
    ``shots + queries`` distinct images, the first ``shots`` as support and the rest as queries, so no support
    image is ever a query (docs/theory.md#transfer, few-shot protocol; Galanti et al. 2022). Labels are re-indexed
    ``0..ways-1`` in the order the classes were drawn; indices are class-major: support_idx (ways*shots,),
    query_idx (ways*queries,), all host int arrays. ``rng``: numpy Generator or int seed (same seed, same
    episodes; ``groups=None``: the episodes of the plain draw). Raises ValueError, eagerly, when ``ways`` exceeds
    the number of classes (of groups) or a class has fewer than ``shots + queries`` images.
    """
    members, rng = _episode_pool(y, ways, shots, queries, n_episodes, rng)
    return _episode_stream(members, ways, shots, queries, n_episodes, rng, _group_classes(y, groups, ways))


def _episode_pool(y, ways, shots, queries, n_episodes, rng):
    """The checks of ``episodes``; returns ``(members, rng)``, ``members[c]`` the sample indices of class c."""
    y = to_numpy(y)
    y = as_labels(y, y.shape[0] if y.ndim else 0)
    for value, name, minimum, meaning in (
        (ways, "ways", 1, "classes per episode"),
        (shots, "shots", 1, "support images per class"),
        (queries, "queries", 1, "query images per class"),
        (n_episodes, "n_episodes", 1, "number of episodes"),
    ):
        checks.integer(name, value, minimum, meaning=meaning)
    rng = checks.as_rng(rng)
    classes = Classes(y)
    if ways > classes.k:
        raise ValueError(f"ways={ways} is more than the {classes.k} classes in y; accepted: 1 <= ways <= {classes.k}")
    need = shots + queries
    small = onp.nonzero(classes.counts < need)[0]
    if len(small):
        c = small[0]
        more = f" (and {len(small) - 1} more classes)" if len(small) > 1 else ""
        raise ValueError(
            f"class {classes.labels[c]} has {classes.counts[c]} images in y{more}, fewer than shots + queries = "
            f"{shots} + {queries} = {need} needed per episode; lower shots/queries or drop that class"
        )
    members = onp.split(onp.argsort(classes.index, kind="stable"), onp.cumsum(classes.counts)[:-1])
    return members, rng


def _group_classes(y, groups, ways):
    """None without ``groups``, else a list with, per group, the indices (in ``Classes(y)`` order) of its classes."""
    if groups is None:
        return None
    labels = Classes(as_labels(to_numpy(y), len(y))).labels
    groups = onp.asarray(to_numpy(groups))
    if groups.ndim != 1 or groups.dtype.kind not in "iu" or len(groups) <= labels.max():
        raise ValueError(f"groups must be a 1-D integer array with groups[label] the group of each class label "
                         f"(length > {labels.max()}); got {groups.dtype} of shape {groups.shape}")
    of_class = groups[labels]
    by_group = [onp.flatnonzero(of_class == g) for g in onp.unique(of_class)]
    if ways > len(by_group):
        raise ValueError(f"ways={ways} is more than the {len(by_group)} groups of the classes in y; an episode "
                         f"draws its classes from distinct groups, so 1 <= ways <= {len(by_group)}")
    return by_group


def _draw_episodes(members, ways, need, count, rng, by_group=None):
    """``count`` episodes as one host int array (count, ways, need): row j of an episode holds the ``need``
    distinct images drawn for its j-th class. The rng calls are those of ``episodes``, in the same order (one
    ``choice`` of the classes, or of the groups and then one class of each, then one ``choice`` per class), so a
    block of draws is the stream's episodes. ``by_group``: ``_group_classes``."""
    out = onp.empty((count, ways, need), dtype=members[0].dtype)
    for e in range(count):
        if by_group is None:
            picked = rng.choice(len(members), size=ways, replace=False)
        else:
            picked = [rng.choice(by_group[g]) for g in rng.choice(len(by_group), size=ways, replace=False)]
        for j, c in enumerate(picked):
            out[e, j] = rng.choice(members[c], size=need, replace=False)
    return out


def _episode_stream(members, ways, shots, queries, n_episodes, rng, by_group=None):
    """The generator behind ``episodes``: ``members[c]`` holds the sample indices of class c."""
    support_labels = onp.repeat(onp.arange(ways), shots)
    query_labels = onp.repeat(onp.arange(ways), queries)
    for _ in range(n_episodes):
        draws = _draw_episodes(members, ways, shots + queries, 1, rng, by_group)[0]  # (ways, s+q)
        yield draws[:, :shots].reshape(-1), support_labels, draws[:, shots:].reshape(-1), query_labels


def _ncc_accuracies(Z, draws, shots):
    """NCC accuracy of each episode of ``draws`` (E, ways, shots+queries), on the array module of ``Z``.

    The operations of ``classes.nearest`` batched over episodes: support means (E, ways, p), the squared
    distances up to the query's own norm, ``argmin`` (ties to the lowest class index). Each episode's
    accuracy equals ``reference_episode_accuracy`` of that episode, but at exact ties (centring rounds them).
    """
    xp = get_xp(Z)
    E, ways, _ = draws.shape
    p = Z.shape[1]
    support = xp.asarray(draws[:, :, :shots].reshape(E, -1))
    query = xp.asarray(draws[:, :, shots:].reshape(E, -1))
    query_labels = xp.asarray(onp.repeat(onp.arange(ways), draws.shape[2] - shots))
    means = xp.mean(Z[support].reshape(E, ways, shots, p), axis=2)  # (E, ways, p)
    centre = xp.mean(means, axis=1, keepdims=True)  # translating both sides changes nothing but rounding
    M = means - centre
    scores = xp.sum(M * M, axis=2)[:, None, :] - 2.0 * ((Z[query] - centre) @ xp.swapaxes(M, 1, 2))
    pred = xp.argmin(scores, axis=2)  # (E, ways*queries)
    return xp.mean((pred == query_labels[None, :]).astype(xp.float64), axis=1)


def _logreg_accuracies(Z_host, draws, shots):
    """Accuracy of the exact logistic-regression probe (``fit_logistic``) of each episode of ``draws``."""
    E, ways, _ = draws.shape
    X = Z_host[draws[:, :, :shots].reshape(E, -1)]  # (E, ways*shots, p)
    W, b = fit_logistic(X, onp.repeat(onp.arange(ways), shots), ways)
    logits = Z_host[draws[:, :, shots:].reshape(E, -1)] @ W + b[:, None, :]  # (E, ways*queries, ways)
    pred = onp.argmax(logits, axis=2)
    return onp.mean(pred == onp.repeat(onp.arange(ways), draws.shape[2] - shots)[None, :], axis=1)


def l2_normalized(Z):
    """Each row of ``Z`` (N, p) divided by its Euclidean norm (a zero row stays zero), on ``Z``'s array module."""
    xp = get_xp(Z)
    norms = xp.sqrt(xp.sum(Z * Z, axis=1, keepdims=True))
    return Z / xp.where(norms > 0, norms, 1.0)


def evaluate_embeddings(Z, y, *, ways=5, shots=5, queries=15, n_episodes=600, rng, classifier="ncc", normalize=None,
                        groups=None):
    """Return the FewShotResult of ``ways``-way ``shots``-shot classification on precomputed embeddings.

    Per episode (see ``episodes``) the accuracy on the queries of NCC with the support means (``"ncc"``,
    docs/theory.md#transfer; Galanti et al. 2022; ties to the lowest class index) or of a logistic-regression
    probe on the support set (``"logreg"``: the optimum of scikit-learn's ``LogisticRegression()`` defaults,
    L2 penalty with C = 1 and an unpenalized intercept, computed exactly by ``fit_logistic``; queries to the
    argmax of the logits, ties to the lowest index; needs ``ways >= 2``). ``normalize``: classify
    ``l2_normalized(Z)``, each embedding divided by its Euclidean norm; the default (None) is True for the probe
    (the usual few-shot protocol: its penalty then acts alike on embeddings of any scale) and False for NCC (the
    paper's, on raw features). ``mean`` over episodes, ``ci95 = 1.96 * sd / sqrt(n_episodes)`` with the sample sd
    (ddof=1; nan for one episode), and ``target_nc = cdnv(Z, y)`` over all classes of ``y`` on the raw ``Z``
    (Munn et al. 2024, Figure 4). ``Z``: (N, p) embeddings of the target images; ``y``: (N,) integer labels. The
    episodes are those of ``episodes(y, ..., rng=rng, groups=groups)`` (``groups``: see ``episodes``; each
    episode's classes from distinct groups), drawn and classified in blocks (NCC on ``Z``'s device with one
    device-to-host copy at the end; logreg in float64 on the host).
    """
    if classifier not in ("ncc", "logreg"):
        raise ValueError(f"classifier must be 'ncc' or 'logreg'; got {classifier!r}")
    Z = as_features(Z)
    y = as_labels(y, Z.shape[0])
    members, rng = _episode_pool(y, ways, shots, queries, n_episodes, rng)
    by_group = _group_classes(y, groups, ways)
    need = shots + queries
    Zc = l2_normalized(Z) if (classifier == "logreg" if normalize is None else normalize) else Z  # classified
    if classifier == "ncc":
        xp = get_xp(Z)
        budget = BLOCK_BYTES if is_device_array(Z) else NCC_HOST_BYTES
        block = max(1, min(NCC_BLOCK, budget // (8 * ways * (need + ways) * (Z.shape[1] + 4))))
        acc = [_ncc_accuracies(Zc, _draw_episodes(members, ways, need, min(block, n_episodes - s), rng, by_group),
                               shots) for s in range(0, n_episodes, block)]
        per_episode = to_numpy(xp.concatenate(acc))  # one device-to-host copy for all episodes
    else:
        if ways < 2:
            raise ValueError(f"classifier='logreg' needs ways >= 2 (a probe needs two classes); got ways={ways}")
        Z_host = to_numpy(Zc)
        block = max(1, BLOCK_BYTES // (8 * ways * need * Z.shape[1] * 4))
        acc = [_logreg_accuracies(Z_host, _draw_episodes(members, ways, need, min(block, n_episodes - s), rng,
                                                         by_group), shots) for s in range(0, n_episodes, block)]
        per_episode = onp.concatenate(acc)
    sd = float(onp.std(per_episode, ddof=1)) if n_episodes > 1 else float("nan")
    return FewShotResult(
        mean=float(onp.mean(per_episode)),
        ci95=1.96 * sd / onp.sqrt(n_episodes),
        per_episode=per_episode,
        target_nc=cdnv(Z, y),
    )


def evaluate(embed_fn, X, y, *, ways=5, shots=5, queries=15, n_episodes=600, rng, classifier="ncc", normalize=None,
             groups=None):
    """Return the FewShotResult of few-shot transfer with the frozen embedding ``embed_fn``.

    Embeds all of ``X`` once, ``Z = embed_fn(X)`` (N, p), then ``evaluate_embeddings(Z, y, ...)``: NCC
    (or logistic-regression) accuracy over episodes with ``ci95 = 1.96 sd / sqrt(n_episodes)`` and the target
    NC (Munn, Dherin, Gonzalvo 2024, Figure 4; docs/theory.md#transfer). ``X``: (N, ...) target inputs; ``y``: (N,);
    ``normalize`` and ``groups``: see ``evaluate_embeddings``.
    """
    Z = embed_fn(X)
    n = X.shape[0] if hasattr(X, "shape") else len(X)
    Z = as_features(Z, "embed_fn(X)", "embeddings (N samples, p features)")
    if Z.shape[0] != n:
        raise ValueError(f"embed_fn(X) returned {Z.shape[0]} rows for {n} inputs; it must embed every row of X")
    return evaluate_embeddings(
        Z, y, ways=ways, shots=shots, queries=queries, n_episodes=n_episodes, rng=rng, classifier=classifier,
        normalize=normalize, groups=groups)

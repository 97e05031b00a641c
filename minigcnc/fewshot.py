"""Few-shot transfer: k-way n-shot episodes and nearest-class-centre accuracy on frozen embeddings.

The protocol of docs/theory.md#transfer [our choice, community standard] for the transfer claim of Munn, Dherin,
Gonzalvo 2024 (Props. 4.2-4.3, Figure 4) and Galanti, Gyorgy, Hutter 2022: from the target classes draw
``n_episodes`` episodes of ``ways`` classes (without replacement), ``shots`` support and ``queries`` query
images per class (support and query disjoint), classify the queries by the nearest support-class mean (NCC)
in the frozen embedding, and report the mean accuracy with ``ci95 = 1.96 sd / sqrt(n_episodes)`` together with
the target NC (the CDNV of the embeddings over all the target classes).
"""
from dataclasses import dataclass

import numpy as onp

from . import checks
from .backend import get_xp, to_numpy
from .classes import Classes, as_features, as_labels, nearest
from .collapse import cdnv


@dataclass(frozen=True)
class FewShotResult:
    """Few-shot accuracy: ``mean`` and ``ci95`` over episodes, ``per_episode`` (n_episodes,), ``target_nc``."""

    mean: float
    ci95: float
    per_episode: onp.ndarray
    target_nc: float

    def __str__(self):
        return f"accuracy {self.mean:.4f} +- {self.ci95:.4f} ({len(self.per_episode)} episodes), target NC {self.target_nc:.4g}"


def episodes(y, *, ways=5, shots=5, queries=15, n_episodes=600, rng):
    """Return an iterator over few-shot episodes ``(support_idx, support_labels, query_idx, query_labels)``.

    Each episode picks ``ways`` distinct classes of ``y`` uniformly without replacement, then for each of them
    ``shots + queries`` distinct images, the first ``shots`` as support and the rest as queries, so no support
    image is ever a query (docs/theory.md#transfer, few-shot protocol; Galanti et al. 2022). Labels are re-indexed
    ``0..ways-1`` in the order the classes were drawn; indices are class-major: support_idx (ways*shots,),
    query_idx (ways*queries,), all host int arrays. ``rng``: numpy Generator or int seed (same seed, same
    episodes). Raises ValueError, eagerly, when ``ways`` exceeds the number of classes or a class has fewer
    than ``shots + queries`` images.
    """
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
    return _episode_stream(members, ways, shots, queries, n_episodes, rng)


def _episode_stream(members, ways, shots, queries, n_episodes, rng):
    """The generator behind ``episodes``: ``members[c]`` holds the sample indices of class c."""
    support_labels = onp.repeat(onp.arange(ways), shots)
    query_labels = onp.repeat(onp.arange(ways), queries)
    for _ in range(n_episodes):
        picked = rng.choice(len(members), size=ways, replace=False)
        draws = [rng.choice(members[c], size=shots + queries, replace=False) for c in picked]  # (ways, s+q)
        draws = onp.stack(draws)
        yield draws[:, :shots].reshape(-1), support_labels, draws[:, shots:].reshape(-1), query_labels


def _ncc_accuracy(Z, support_idx, query_idx, query_labels, ways, shots):
    """Accuracy (0-d array) of NCC on one episode: means of the class-major support block, nearest for queries."""
    xp = get_xp(Z)
    means = xp.mean(Z[xp.asarray(support_idx)].reshape(ways, shots, -1), axis=1)  # (ways, p)
    pred = nearest(means, Z[xp.asarray(query_idx)])
    return xp.mean((pred == xp.asarray(query_labels)).astype(xp.float64))


def _logreg_accuracy(Z_host, support_idx, support_labels, query_idx, query_labels):
    """Accuracy of a scikit-learn logistic-regression probe fitted on the support set of one episode."""
    from sklearn.linear_model import LogisticRegression

    probe = LogisticRegression(max_iter=1000)
    probe.fit(Z_host[support_idx], support_labels)
    return float(onp.mean(probe.predict(Z_host[query_idx]) == query_labels))


def evaluate_embeddings(Z, y, *, ways=5, shots=5, queries=15, n_episodes=600, rng, classifier="ncc"):
    """Return the FewShotResult of ``ways``-way ``shots``-shot classification on precomputed embeddings.

    Per episode (see ``episodes``) the accuracy on the queries of NCC with the support means (``"ncc"``,
    docs/theory.md#transfer; Galanti et al. 2022) or of a logistic-regression probe on the support set
    (``"logreg"``, scikit-learn defaults, unnormalized features); ``mean`` over episodes,
    ``ci95 = 1.96 * sd / sqrt(n_episodes)`` with the sample sd (ddof=1; nan for one episode), and
    ``target_nc = cdnv(Z, y)`` over all classes of ``y`` (Munn et al. 2024, Figure 4).
    ``Z``: (N, p) embeddings of the target images; ``y``: (N,) integer labels.
    """
    if classifier not in ("ncc", "logreg"):
        raise ValueError(f"classifier must be 'ncc' or 'logreg'; got {classifier!r}")
    Z = as_features(Z)
    y = as_labels(y, Z.shape[0])
    stream = episodes(y, ways=ways, shots=shots, queries=queries, n_episodes=n_episodes, rng=rng)
    if classifier == "ncc":
        xp = get_xp(Z)
        acc = [_ncc_accuracy(Z, s_idx, q_idx, q_lab, ways, shots) for s_idx, _, q_idx, q_lab in stream]
        per_episode = to_numpy(xp.stack(acc))  # one device-to-host copy for all episodes
    else:
        Z_host = to_numpy(Z)
        per_episode = onp.array([_logreg_accuracy(Z_host, *episode) for episode in stream])
    sd = float(onp.std(per_episode, ddof=1)) if n_episodes > 1 else float("nan")
    return FewShotResult(
        mean=float(onp.mean(per_episode)),
        ci95=1.96 * sd / onp.sqrt(n_episodes),
        per_episode=per_episode,
        target_nc=cdnv(Z, y),
    )


def evaluate(embed_fn, X, y, *, ways=5, shots=5, queries=15, n_episodes=600, rng, classifier="ncc"):
    """Return the FewShotResult of few-shot transfer with the frozen embedding ``embed_fn``.

    Embeds all of ``X`` once, ``Z = embed_fn(X)`` (N, p), then ``evaluate_embeddings(Z, y, ...)``: NCC
    (or logistic-regression) accuracy over episodes with ``ci95 = 1.96 sd / sqrt(n_episodes)`` and the target
    NC (Munn, Dherin, Gonzalvo 2024, Figure 4; docs/theory.md#transfer). ``X``: (N, ...) target inputs; ``y``: (N,).
    """
    Z = embed_fn(X)
    n = X.shape[0] if hasattr(X, "shape") else len(X)
    Z = as_features(Z, "embed_fn(X)", "embeddings (N samples, p features)")
    if Z.shape[0] != n:
        raise ValueError(f"embed_fn(X) returned {Z.shape[0]} rows for {n} inputs; it must embed every row of X")
    return evaluate_embeddings(
        Z, y, ways=ways, shots=shots, queries=queries, n_episodes=n_episodes, rng=rng, classifier=classifier
    )

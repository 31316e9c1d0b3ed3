"""Cross-task preference alignment (CPA, PEARL: Liu et al., ICML 2024, Sec. 4.1): preference labels of a source task
carried to unlabelled segment pairs of a target task through a Gromov-Wasserstein coupling between the two tasks'
segments.

    C_s = distance_matrix(segment_features(source_obs, source_act))      # (Ns, Ns), distances inside the source
    C_t = distance_matrix(segment_features(target_obs, target_act))      # (Nt, Nt), distances inside the target
    T = gw_coupling(C_s, C_t)                                            # (Ns, Nt), GW transport plan
    labels, confidence = transfer_labels(T, (i, k), z, (j, l))           # (Q,), (Q,) transferred labels
    transfer_accuracy(labels, scripted_target_labels)                    # fraction on the right side of 0.5

The transferred label of target pair (j, l) is the source labels z_ik weighted by T_ij T_kl, *normalised* over the
labelled source pairs:

    z(y_j, y_l) = sum_{(i,k) labelled} T_ij T_kl z_ik / sum_{(i,k) labelled} T_ij T_kl

PEARL's transferred-label formula as written omits the denominator, which shrinks labels by the transported mass
(an identity coupling over 3 segments, T = I/3, turns a label 1 into 1/9). Each labelled source pair counts in both
orders, (i, k) with z_ik and (k, i) with 1 - z_ik, so transferred labels are consistent: z(y_l, y_j) = 1 - z(y_j, y_l).
A target pair whose segments receive no transport weight from any labelled source pair has no label (NaN).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import ot
import scipy.sparse
import torch
from scipy.spatial.distance import cdist

FEATURE_KINDS = ("states", "state_actions")
METRICS = ("euclidean", "sqeuclidean", "cityblock", "cosine")
NORMALIZATIONS = ("max", "mean", "median", "none")
GW_METHODS = ("exact", "entropic", "fast")

Array = np.ndarray | torch.Tensor


def _is_torch(x) -> bool:
    return isinstance(x, torch.Tensor)


def _check_finite(x: Array, name: str) -> None:
    finite = bool(torch.isfinite(x).all()) if _is_torch(x) else bool(np.isfinite(x).all())
    if not finite:
        raise ValueError(f"{name} holds NaN or infinite values")


def _float64(x) -> Array:
    """`x` as float64 (numpy, or a torch tensor on its own device)."""
    if _is_torch(x):
        return x.to(torch.float64)
    return np.asarray(x, dtype=np.float64)


def _eye(n: int, like: Array) -> Array:
    """Boolean identity (n, n), of `like`'s kind (and device)."""
    return torch.eye(n, dtype=torch.bool, device=like.device) if _is_torch(like) else np.eye(n, dtype=bool)


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if _is_torch(x) else np.asarray(x)


def segment_features(obs: Array, action: Array | None = None, kind: str = "states") -> Array:
    """One feature vector per segment: its states (N, H, S) -> (N, H*S), or states and actions side by side
    (`kind="state_actions"`: (N, H, S + A) -> (N, H*(S+A))). PEARL compares whole segments (trajectories of H
    steps), so the time order is kept. numpy in, numpy out; torch in, torch out."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; choose one of {', '.join(FEATURE_KINDS)}")
    if obs.ndim != 3:
        raise ValueError(f"segment observations must be (N, H, S), got shape {tuple(obs.shape)}")
    steps = obs
    if kind == "state_actions":
        if action is None:
            raise ValueError("kind='state_actions' needs the segments' actions")
        if action.ndim != 3 or tuple(action.shape[:2]) != tuple(obs.shape[:2]):
            raise ValueError(
                f"segment actions must be (N, H, A) with the observations' (N, H) = {tuple(obs.shape[:2])}, "
                f"got shape {tuple(action.shape)}"
            )
        cat = torch.cat if _is_torch(obs) else np.concatenate
        steps = cat([obs, action], -1)  # (N, H, S + A)
    _check_finite(steps, "segment features")
    return steps.reshape(steps.shape[0], -1)  # (N, H * D)


def distance_matrix(features: Array, metric: str = "euclidean", normalize: str | None = "max") -> Array:
    """Pairwise distances inside one task, C_ik = d(x_i, x_k) (PEARL Sec. 4.1's intra-task cost), (N, D) -> (N, N),
    float64, symmetric with a zero diagonal.

    metric: "euclidean", "sqeuclidean", "cityblock" (L1) or "cosine" (1 - cosine similarity).
    normalize: divide by the "max", "mean" or "median" off-diagonal distance, or "none" (None). GW compares the
    two tasks' distances with each other, so they must share a scale: the default puts both in [0, 1].
    numpy in, numpy out; torch in, torch out (on the input's device).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    normalize = "none" if normalize is None else normalize
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; choose one of {', '.join(NORMALIZATIONS)} or None")
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {tuple(features.shape)}")
    _check_finite(features, "features")
    x = _float64(features)
    if metric in ("euclidean", "sqeuclidean"):
        d = ot.dist(x, x, metric=metric)
    elif metric == "cityblock":
        d = torch.cdist(x, x, p=1) if _is_torch(x) else cdist(x, x, "cityblock")
    else:  # cosine
        norms = x.norm(dim=1, keepdim=True) if _is_torch(x) else np.linalg.norm(x, axis=1, keepdims=True)
        if bool((norms == 0).any()):
            raise ValueError("cosine distance is undefined for an all-zero feature vector")
        u = x / norms
        d = 1.0 - u @ u.T
    d = (d + d.T) / 2  # exact symmetry (the Gram-matrix formulas round differently on either side)
    if _is_torch(d):
        d = d.clamp(min=0).fill_diagonal_(0.0)
    else:
        d = np.maximum(d, 0.0)
        np.fill_diagonal(d, 0.0)
    if normalize == "none":
        return d
    off_diagonal = d[~_eye(len(d), d)]  # (N*(N-1),)
    if normalize == "median":  # torch's median of an even count is the lower middle value, numpy's the mean of two
        scale = float(off_diagonal.quantile(0.5) if _is_torch(d) else np.median(off_diagonal))
    else:
        scale = float(off_diagonal.max() if normalize == "max" else off_diagonal.mean())
    return d / scale if scale > 0 else d  # all segments identical: nothing to scale


def _check_cost(C: Array, name: str) -> None:
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] < 2:
        raise ValueError(f"{name} must be a square (N, N) distance matrix with N >= 2, got shape {tuple(C.shape)}")
    _check_finite(C, name)


EXACT_OPTIONS = {"max_iter": 10_000, "tol_rel": 1e-9, "tol_abs": 1e-9}
ENTROPIC_OPTIONS = {"epsilon": 1e-2, "solver": "PGD", "max_iter": 1000, "tol": 1e-7, "inner_max_iter": 1000}
FAST_OPTIONS = {"num_clusters": None, "medoid_iters": 5, "seed": 0, **EXACT_OPTIONS}  # None: a fifth of the segments
GW_OPTIONS = {"exact": EXACT_OPTIONS, "entropic": ENTROPIC_OPTIONS, "fast": FAST_OPTIONS}


def gw_coupling(C_source: Array, C_target: Array, method: str = "exact", **options) -> Array:
    """The Gromov-Wasserstein coupling T (Ns, Nt) between two tasks' segments (PEARL Sec. 4.1): the transport plan
    with uniform marginals minimising sum_{i,j,k,l} (C_s[i,k] - C_t[j,l])^2 T_ij T_kl (square loss), solved with POT.

    method:
      "exact": POT's conditional-gradient solver (`ot.gromov.gromov_wasserstein`); options max_iter, tol_rel,
        tol_abs. Sparse: about Ns + Nt nonzero entries.
      "entropic": entropic GW (`ot.gromov.entropic_gromov_wasserstein`) on POT's torch backend, on the inputs'
        device (CUDA tensors: the GPU; numpy: the CPU); options epsilon (the regularisation, relative to distances
        normalised to [0, 1]), solver ("PGD" or "PPA"), max_iter and tol (outer iterations), inner_max_iter
        (Sinkhorn iterations per outer one). Dense.
      "fast": quantised GW: each task's segments are split into `num_clusters` clusters by k-medoids on its distance
        matrix (default None: a fifth of its segments), exact GW couples the medoids (weighted by cluster sizes), and
        each medoid pair's mass is spread evenly over the two clusters' members (`_quantized_gw`); options
        num_clusters, medoid_iters, seed and exact's. Block-dense; measured 15-35x faster than exact at 2000
        segments with transfer accuracy within 1.3 points of exact's (docs/transfer.md).
    Inputs are float64-cast; numpy in, numpy out; torch in, torch out (on the inputs' device).
    """
    if method not in GW_METHODS:
        raise ValueError(f"unknown GW method {method!r}; choose one of {', '.join(GW_METHODS)}")
    unknown = set(options) - set(GW_OPTIONS[method])
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(sorted(unknown))} for GW method {method!r}; "
            f"it takes {', '.join(GW_OPTIONS[method])}"
        )
    settings = {**GW_OPTIONS[method], **options}
    if _is_torch(C_source) != _is_torch(C_target):
        raise ValueError("C_source and C_target must both be numpy arrays or both torch tensors")
    _check_cost(C_source, "C_source")
    _check_cost(C_target, "C_target")
    if method == "entropic":
        as_torch = _is_torch(C_source)
        Cs = _float64(C_source if as_torch else torch.from_numpy(np.asarray(C_source)))
        Ct = _float64(C_target if as_torch else torch.from_numpy(np.asarray(C_target)))
        settings["numItermax"] = settings.pop("inner_max_iter")
        T = ot.gromov.entropic_gromov_wasserstein(Cs, Ct.to(Cs.device), loss_fun="square_loss", **settings)
        return T if as_torch else T.cpu().numpy()
    Cs, Ct = _float64(_to_numpy(C_source)), _float64(_to_numpy(C_target))
    if method == "exact":
        T = _exact_gw(Cs, Ct, ot.unif(len(Cs)), ot.unif(len(Ct)), **settings)
    else:
        T = _quantized_gw(Cs, Ct, **settings)
    return torch.from_numpy(T).to(C_source.device) if _is_torch(C_source) else T


def _exact_gw(Cs: np.ndarray, Ct: np.ndarray, p: np.ndarray, q: np.ndarray, **settings) -> np.ndarray:
    """POT's exact (conditional-gradient) GW with the square loss, marginals p (Ns,) and q (Nt,)."""
    return ot.gromov.gromov_wasserstein(Cs, Ct, p, q, loss_fun="square_loss", **settings)


def medoid_partition(C: np.ndarray, num_clusters: int, iters: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-medoids on a distance matrix (N, N): farthest-point seeding from a random first point, then `iters` rounds
    of assigning each point to its nearest medoid and moving each medoid to the member closest to the rest of its
    cluster. Returns (medoids (K,), cluster of each point (N,)); every cluster is non-empty."""
    rng = np.random.default_rng(seed)
    medoids = [int(rng.integers(len(C)))]
    nearest = C[medoids[0]].copy()  # (N,) distance to the closest medoid so far
    for _ in range(min(num_clusters, len(C)) - 1):
        medoids.append(int(nearest.argmax()))
        nearest = np.minimum(nearest, C[medoids[-1]])
    medoids = np.array(medoids)
    for _ in range(iters):
        cluster = C[:, medoids].argmin(1)  # (N,)
        moved = medoids.copy()
        for c in range(len(medoids)):
            members = np.flatnonzero(cluster == c)
            if len(members):
                moved[c] = members[C[np.ix_(members, members)].sum(1).argmin()]
        if (moved == medoids).all():
            break
        medoids = moved
    cluster = C[:, medoids].argmin(1)
    used = np.unique(cluster)  # a medoid can lose all its points to a duplicate of itself
    return medoids[used], np.searchsorted(used, cluster)


def _quantized_gw(
    Cs: np.ndarray, Ct: np.ndarray, num_clusters: int | None, medoid_iters: int, seed: int, **exact_settings
) -> np.ndarray:
    """Quantised GW (after Chowdhury et al. 2021): exact GW between the two tasks' medoids, with marginals the
    cluster sizes, lifted back to the segments: T_ij = T^c[a_i, b_j] / (n_a n_b) for segment i in source cluster a
    (of n_a members) and j in target cluster b. The lifted plan keeps uniform marginals."""
    if num_clusters is not None and num_clusters < 2:
        raise ValueError(f"num_clusters must be >= 2 (or None: a fifth of the segments), got {num_clusters}")
    Ks, Kt = (num_clusters or max(2, round(len(C) / 5)) for C in (Cs, Ct))
    medoids_s, cluster_s = medoid_partition(Cs, Ks, medoid_iters, seed)  # (Ks,), (Ns,)
    medoids_t, cluster_t = medoid_partition(Ct, Kt, medoid_iters, seed)  # (Kt,), (Nt,)
    size_s, size_t = np.bincount(cluster_s), np.bincount(cluster_t)  # (Ks,), (Kt,)
    Tc = _exact_gw(
        Cs[np.ix_(medoids_s, medoids_s)],
        Ct[np.ix_(medoids_t, medoids_t)],
        size_s / len(Cs),
        size_t / len(Ct),
        **exact_settings,
    )  # (Ks, Kt)
    T = Tc[np.ix_(cluster_s, cluster_t)]  # (Ns, Nt), the medoid pair's mass for every segment pair
    T /= size_s[cluster_s, None]  # spread evenly over the members, in place: one (Ns, Nt) array
    T /= size_t[None, cluster_t]
    return T


def _pair_indices(pairs, n: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """`pairs` = (first, second): two index arrays (P,) into n segments."""
    if len(pairs) != 2:
        raise ValueError(f"{name} must be two index arrays (first, second), got {len(pairs)} items")
    first, second = (np.asarray(_to_numpy(a)) for a in pairs)
    if first.ndim != 1 or first.shape != second.shape:
        raise ValueError(f"{name} must be two 1-D index arrays of one length, got shapes {first.shape}, {second.shape}")
    for a in (first, second):
        if len(a) and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= n):
            raise ValueError(
                f"{name} must hold integer indices in [0, {n}) (the coupling's side), got {a.dtype} "
                f"in [{a.min()}, {a.max()}]"
            )
    return first.astype(np.int64), second.astype(np.int64)


def transfer_labels(
    coupling: Array,
    source_pairs: Sequence,
    source_labels: Array,
    target_pairs: Sequence,
    tie_band: float = 0.0,
    min_confidence: float = 0.0,
    chunk: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Preference labels of target pairs (j, l) from labelled source pairs (i, k) through the coupling T (Ns, Nt),
    PEARL's weighted sum (Sec. 4.1) normalised over the labelled source pairs (see the module docstring):

        label(j, l) = sum_{(i,k)} T_ij T_kl z_ik / w(j, l),   w(j, l) = sum_{(i,k)} T_ij T_kl

    with each source pair in both orders ((k, i) labelled 1 - z_ik). Computed without loops over pairs: with Z (Ns, Ns)
    the sparse matrix of labels and M its 0/1 mask, the numerators are (T^T Z T)[j, l] and the weights
    (T^T M T)[j, l], gathered as sum_i T[i, j] (Z T)[i, l].

    Args:
        coupling: T (Ns, Nt), e.g. from `gw_coupling` (rescaled to total mass 1).
        source_pairs: (i, k), index arrays (P,) into the source segments; source_labels: z (P,) in [0, 1], soft
            labels kept (1: segment i preferred, 0: segment k, 0.5: tie).
        target_pairs: (j, l), index arrays (Q,) into the target segments.
        tie_band: a transferred label within 0.5 +- tie_band becomes 0.5 (a tie).
        min_confidence: target pairs with confidence below it get no label (NaN).
        chunk: target pairs gathered at a time (memory: Ns * chunk floats).

    Returns:
        labels (Q,) float32 in [0, 1], NaN where a pair has no label: it gets no weight from any labelled source
            pair (w = 0), or its confidence is below `min_confidence`;
        confidence (Q,) float32: w(j, l) / (q_j q_l sum_{(i,k)} p_i p_k) with p, q the coupling's marginals, i.e. the
            pair's weight relative to what the uninformative coupling p q^T would give it. It does not depend on the
            other target pairs asked for, and averages 1 over all Nt^2 target pairs (weighted by q_j q_l; plainly
            for uniform marginals).
    """
    T = _float64(_to_numpy(coupling))
    if T.ndim != 2:
        raise ValueError(f"coupling must be a (Ns, Nt) matrix, got shape {T.shape}")
    _check_finite(T, "coupling")
    if (T < 0).any() or T.sum() <= 0:
        raise ValueError("coupling must be non-negative with a positive total mass")
    T = T / T.sum()
    Ns, Nt = T.shape
    i, k = _pair_indices(source_pairs, Ns, "source_pairs")
    j, l = _pair_indices(target_pairs, Nt, "target_pairs")
    z = _float64(_to_numpy(source_labels))
    if z.shape != i.shape:
        raise ValueError(f"source_labels must be (P,) = {i.shape}, one per source pair, got shape {z.shape}")
    _check_finite(z, "source_labels")
    if len(z) and (z.min() < 0 or z.max() > 1):
        raise ValueError(f"source_labels must lie in [0, 1], got [{z.min()}, {z.max()}]")
    if not 0 <= tie_band <= 0.5:
        raise ValueError(f"tie_band must be in [0, 0.5], got {tie_band}")
    if min_confidence < 0:
        raise ValueError(f"min_confidence must be >= 0, got {min_confidence}")

    # Source labels in both orders as sparse (Ns, Ns) matrices; dense once they fill a good part of it.
    rows, cols = np.concatenate([i, k]), np.concatenate([k, i])  # (2P,)
    Z = scipy.sparse.csr_matrix((np.concatenate([z, 1 - z]), (rows, cols)), shape=(Ns, Ns))  # labels
    M = scipy.sparse.csr_matrix((np.ones(2 * len(z)), (rows, cols)), shape=(Ns, Ns))  # 0/1 mask (counts repeats)
    if M.nnz > 0.05 * Ns * Ns:
        Z, M = Z.toarray(), M.toarray()
    ZT, MT = Z @ T, M @ T  # (Ns, Nt)
    numerator, weight = np.zeros(len(j)), np.zeros(len(j))  # (Q,)
    for start in range(0, len(j), chunk):
        s = slice(start, start + chunk)
        Tj = T[:, j[s]]  # (Ns, chunk)
        numerator[s] = np.einsum("iq,iq->q", Tj, ZT[:, l[s]])  # (T^T Z T)[j, l]
        weight[s] = np.einsum("iq,iq->q", Tj, MT[:, l[s]])  # (T^T M T)[j, l]

    p, q = T.sum(1), T.sum(0)  # (Ns,), (Nt,) marginals
    independent = q[j] * q[l] * (p @ (M @ p))  # (Q,) the weight under p q^T
    confidence = np.divide(weight, independent, out=np.zeros_like(weight), where=independent > 0)
    labels = np.full(len(j), np.nan)
    has = weight > 0
    labels[has] = np.clip(numerator[has] / weight[has], 0.0, 1.0)
    labels[np.abs(labels - 0.5) <= tie_band] = 0.5
    labels[confidence < min_confidence] = np.nan
    return labels.astype(np.float32), confidence.astype(np.float32)


def transfer_accuracy(transferred: Array, true_labels: Array) -> float:
    """Fraction of target pairs, among those with a transferred label (not NaN) and a true preference (label not
    0.5), whose transferred label is on the same side of 0.5 as the true (scripted) one; a transferred tie counts as
    wrong. NaN when no pair qualifies."""
    s, t = np.asarray(_to_numpy(transferred), np.float64), np.asarray(_to_numpy(true_labels), np.float64)
    if s.shape != t.shape or s.ndim != 1:
        raise ValueError(f"transferred and true labels must be (Q,) arrays of one shape, got {s.shape} and {t.shape}")
    _check_finite(t, "true_labels")
    counted = ~np.isnan(s) & (t != 0.5)
    if not counted.any():
        return float("nan")
    return float(np.mean(np.sign(s[counted] - 0.5) == np.sign(t[counted] - 0.5)))

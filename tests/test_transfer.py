"""Cross-task preference alignment (embodied_rl/labelling/transfer.py): GW couplings and transferred labels."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.stats import special_ortho_group

from embodied_rl.labelling.transfer import (
    distance_matrix,
    gw_coupling,
    medoid_partition,
    segment_features,
    transfer_accuracy,
    transfer_labels,
)


def isometric_clouds(n=12, dim=3, seed=0):
    """A random point cloud (n, dim), a rotated and permuted copy of it, and the permutation: Y[perm[i]] = R X[i]."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim))
    R = special_ortho_group.rvs(dim, random_state=seed)
    perm = rng.permutation(n)
    Y = np.empty_like(X)
    Y[perm] = X @ R.T + 3.0  # rotated, shifted, rows permuted
    return X, Y, perm


def brute_force_labels(T, source_pairs, z, target_pairs):
    """The normalised transferred label by loops: each labelled source pair in both orders."""
    T = T / T.sum()
    labels = []
    for j, l in zip(*target_pairs):
        num = den = 0.0
        for (i, k), label in zip(zip(*source_pairs), z):
            for a, b, y in ((i, k, label), (k, i, 1 - label)):
                num += T[a, j] * T[b, l] * y
                den += T[a, j] * T[b, l]
        labels.append(num / den if den > 0 else np.nan)
    return np.array(labels)


# ---- transfer_labels ----


def test_identity_coupling_gives_back_the_source_label_not_one_ninth():
    T = np.eye(3) / 3  # the reviewers' example: the paper's formula as written gives 1/9
    labels, confidence = transfer_labels(T, ([0], [1]), [1.0], ([0, 1, 0], [1, 0, 2]))
    assert labels[0] == pytest.approx(1.0)
    assert labels[1] == pytest.approx(0.0)  # the same pair the other way round
    assert np.isnan(labels[2]) and confidence[2] == 0  # (0, 2) gets no weight from the labelled pair: no label
    soft, _ = transfer_labels(T, ([0], [1]), [0.7], ([0], [1]))
    assert soft[0] == pytest.approx(0.7)  # soft labels kept


def test_permutation_coupling_permutes_labels():
    rng = np.random.default_rng(0)
    n = 6
    perm = rng.permutation(n)
    T = np.zeros((n, n))
    T[np.arange(n), perm] = 1 / n  # source segment i is target segment perm[i]
    i, k = np.triu_indices(n, 1)
    z = rng.uniform(size=len(i))
    labels, _ = transfer_labels(T, (i, k), z, (perm[i], perm[k]))
    np.testing.assert_allclose(labels, z, atol=1e-6)
    flipped, _ = transfer_labels(T, (i, k), z, (perm[k], perm[i]))
    np.testing.assert_allclose(flipped, 1 - z, atol=1e-6)


def test_vectorised_labels_equal_the_brute_force_loop():
    rng = np.random.default_rng(1)
    T = rng.uniform(size=(5, 4)) * (rng.uniform(size=(5, 4)) > 0.3)  # sparse-ish, not normalised
    source = (np.array([0, 1, 2, 4, 0, 3]), np.array([1, 3, 4, 0, 1, 2]))  # (0, 1) twice
    z = np.array([1.0, 0.0, 0.5, 0.8, 0.2, 1.0])
    target = (np.array([0, 1, 2, 3, 3, 0]), np.array([1, 0, 3, 2, 0, 2]))
    labels, _ = transfer_labels(T, source, z, target, chunk=4)  # chunk smaller than the pairs: two gathers
    np.testing.assert_allclose(labels, brute_force_labels(T, source, z, target), atol=1e-6)


def test_dense_and_sparse_label_matrices_agree():
    rng = np.random.default_rng(2)
    T = rng.uniform(size=(30, 20))
    target = (rng.integers(20, size=50), rng.integers(20, size=50))
    i, k = np.triu_indices(30, 1)  # every pair: dense
    z = rng.uniform(size=len(i))
    dense, _ = transfer_labels(T, (i, k), z, target)
    few = rng.choice(len(i), 10, replace=False)  # 20 of 900 entries: sparse
    sparse, _ = transfer_labels(T, (i[few], k[few]), z[few], target)
    np.testing.assert_allclose(dense, brute_force_labels(T, (i, k), z, target), atol=1e-6)
    np.testing.assert_allclose(sparse, brute_force_labels(T, (i[few], k[few]), z[few], target), atol=1e-6)


def test_tie_band_makes_near_half_labels_ties():
    T = np.eye(4) / 4
    source = ([0, 0, 0], [1, 2, 3])
    z = np.array([0.55, 0.62, 0.9])
    labels, _ = transfer_labels(T, source, z, source, tie_band=0.1)
    np.testing.assert_allclose(labels, [0.5, 0.62, 0.9], atol=1e-6)  # |0.55 - 0.5| <= 0.1: tie; 0.62 kept
    untouched, _ = transfer_labels(T, source, z, source)
    np.testing.assert_allclose(untouched, z, atol=1e-6)
    edge, _ = transfer_labels(T, ([0, 0], [1, 2]), [0.75, 0.25], ([0, 0], [1, 2]), tie_band=0.25)
    np.testing.assert_array_equal(edge, [0.5, 0.5])  # the band's edges are inside it (exact in binary)


def test_confidence_is_relative_to_the_independent_coupling_and_filters():
    rng = np.random.default_rng(3)
    T = rng.uniform(size=(8, 6)) ** 4  # uneven weights, non-uniform marginals
    i, k = np.array([0, 2, 5]), np.array([1, 3, 7])
    z = np.array([1.0, 0.0, 1.0])
    j, l = (a.ravel() for a in np.meshgrid(np.arange(6), np.arange(6), indexing="ij"))  # all Nt^2 target pairs
    labels, confidence = transfer_labels(T, (i, k), z, (j, l))
    q = T.sum(0) / T.sum()
    assert np.sum(q[j] * q[l] * confidence) == pytest.approx(1.0, rel=1e-5)  # mean 1 under q x q
    # the independent coupling p q^T gives every pair confidence 1
    independent = np.outer(T.sum(1), T.sum(0))
    _, flat = transfer_labels(independent, (i, k), z, (j, l))
    np.testing.assert_allclose(flat, 1.0, rtol=1e-5)
    # a pair's confidence does not depend on the other pairs asked for
    _, alone = transfer_labels(T, (i, k), z, (j[:1], l[:1]))
    assert alone[0] == pytest.approx(confidence[0], rel=1e-6)
    threshold = float(np.sort(confidence)[len(confidence) // 2])  # one pair sits exactly at the threshold: kept
    filtered, _ = transfer_labels(T, (i, k), z, (j, l), min_confidence=threshold)
    keep = confidence >= threshold
    assert np.isnan(filtered[~keep]).all()
    np.testing.assert_allclose(filtered[keep], labels[keep], atol=1e-6)
    # at the threshold a pair is kept: T = I/4 gives pair (0, 1) confidence 8 exactly (0.0625 / (0.25^2 * 0.125))
    kept, exact = transfer_labels(np.eye(4) / 4, ([0], [1]), [1.0], ([0], [1]), min_confidence=8.0)
    assert exact[0] == 8.0 and kept[0] == 1.0
    dropped, _ = transfer_labels(np.eye(4) / 4, ([0], [1]), [1.0], ([0], [1]), min_confidence=8.001)
    assert np.isnan(dropped[0])


def test_transfer_accuracy_counts_non_tie_pairs_with_a_label():
    true = np.array([1.0, 0.0, 1.0, 0.5, 0.0, 1.0])
    transferred = np.array([0.9, 0.4, 0.2, 0.0, np.nan, 0.5])
    # counted: pairs 0, 1, 2, 5 (pair 3 is a true tie, pair 4 has no label); right: 0, 1; pair 5's tie is wrong
    assert transfer_accuracy(transferred, true) == pytest.approx(2 / 4)
    assert np.isnan(transfer_accuracy(np.array([np.nan]), np.array([1.0])))


# ---- features and distances ----


def test_segment_features_flatten_segments_in_time_order():
    obs = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # (N, H, S)
    act = -np.ones((2, 3, 1), np.float32)
    assert segment_features(obs).shape == (2, 12)
    both = segment_features(obs, act, kind="state_actions")
    assert both.shape == (2, 15)
    np.testing.assert_array_equal(both[0, :5], [0, 1, 2, 3, -1])  # step 0: state then action
    torch_both = segment_features(torch.from_numpy(obs), torch.from_numpy(act), kind="state_actions")
    np.testing.assert_array_equal(torch_both.numpy(), both)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cityblock", "cosine"])
def test_distance_matrix_metrics_match_scipy_and_torch(metric):
    x = np.random.default_rng(4).normal(size=(7, 5))
    d = distance_matrix(x, metric=metric, normalize=None)
    np.testing.assert_allclose(d, cdist(x, x, metric), atol=1e-10)
    assert (d == d.T).all() and (np.diag(d) == 0).all()
    t = distance_matrix(torch.from_numpy(x), metric=metric, normalize="max")
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), d / d.max(), atol=1e-10)


def test_distance_matrix_normalisations():
    x = np.random.default_rng(5).normal(size=(9, 3)) * 50
    raw = cdist(x, x)
    off = raw[~np.eye(9, dtype=bool)]
    np.testing.assert_allclose(distance_matrix(x, normalize="max"), raw / off.max(), atol=1e-12)
    np.testing.assert_allclose(distance_matrix(x, normalize="mean"), raw / off.mean(), atol=1e-12)
    np.testing.assert_allclose(distance_matrix(x, normalize="median"), raw / np.median(off), atol=1e-12)
    np.testing.assert_allclose(distance_matrix(x, normalize="none"), raw, atol=1e-10)
    scaled = distance_matrix(x * 7 + 1)  # normalised distances ignore scale and shift
    np.testing.assert_allclose(scaled, distance_matrix(x), atol=1e-12)
    assert (distance_matrix(np.ones((4, 2))) == 0).all()  # identical segments: zeros, no division by zero


# ---- GW couplings ----


@pytest.mark.parametrize("method", ["exact", "fast"])
def test_gw_recovers_the_correspondence_of_isometric_clouds(method):
    X, Y, perm = isometric_clouds()
    options = {"num_clusters": 12} if method == "fast" else {}  # one segment per cluster: quantisation is lossless
    T = gw_coupling(distance_matrix(X), distance_matrix(Y), method=method, **options)
    assert T.shape == (12, 12)
    np.testing.assert_allclose(T.sum(1), 1 / 12, atol=1e-8)  # uniform marginals
    np.testing.assert_allclose(T.sum(0), 1 / 12, atol=1e-8)
    np.testing.assert_array_equal(T.argmax(1), perm)


def test_fast_gw_matches_clusters_of_isometric_clouds():
    """Quantised GW with fewer clusters than points: whole clusters go to their rotated copies."""
    rng = np.random.default_rng(6)
    centres = rng.normal(size=(4, 3)) * 10
    sizes = [3, 4, 5, 6]  # unequal sizes, so no two clusters are interchangeable
    X = np.concatenate([c + 0.1 * rng.normal(size=(s, 3)) for c, s in zip(centres, sizes)])
    R = special_ortho_group.rvs(3, random_state=1)
    perm = rng.permutation(len(X))
    Y = np.empty_like(X)
    Y[perm] = X @ R.T
    blob = np.repeat(np.arange(4), sizes)  # cluster of each source point; target point perm[i] is in blob[i]
    target_blob = np.empty_like(blob)
    target_blob[perm] = blob
    T = gw_coupling(distance_matrix(X), distance_matrix(Y), method="fast")  # default: 18 / 5 -> 4 clusters
    mass = np.zeros((4, 4))
    np.add.at(mass, (blob[:, None], target_blob[None, :]), T)
    np.testing.assert_allclose(mass, np.diag(sizes) / len(X), atol=1e-8)
    for b in range(4):  # one cluster per blob (the default K): each matched block is spread evenly
        block = T[np.ix_(blob == b, target_blob == b)]
        np.testing.assert_allclose(block, 1 / (len(X) * sizes[b]), rtol=1e-6)


def test_fast_gw_lifts_clusters_of_different_sizes_with_uniform_marginals():
    """9 source segments in blobs of 3 and 6, 12 target segments in blobs of 4 and 8: matched clusters hold the
    same mass but not the same number of segments."""
    rng = np.random.default_rng(9)
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    X = np.concatenate([centres[0] + 0.1 * rng.normal(size=(3, 2)), centres[1] + 0.1 * rng.normal(size=(6, 2))])
    Y = np.concatenate([centres[0] + 0.1 * rng.normal(size=(4, 2)), centres[1] + 0.1 * rng.normal(size=(8, 2))])
    T = gw_coupling(distance_matrix(X), distance_matrix(Y), method="fast", num_clusters=2)
    np.testing.assert_allclose(T.sum(1), 1 / 9, atol=1e-8)
    np.testing.assert_allclose(T.sum(0), 1 / 12, atol=1e-8)
    np.testing.assert_allclose(T[:3, :4], 1 / 3 / 12, rtol=1e-6)  # mass 1/3 over 3 x 4 segment pairs
    np.testing.assert_allclose(T[3:, 4:], 2 / 3 / 48, rtol=1e-6)  # mass 2/3 over 6 x 8


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")  # 200 inner iterations: enough to couple 10 points
def test_entropic_gw_runs_on_torch_and_keeps_the_input_kind():
    X, Y, perm = isometric_clouds(n=10)
    Cs, Ct = distance_matrix(X), distance_matrix(Y)
    options = {"epsilon": 5e-3, "solver": "PPA", "inner_max_iter": 200}
    T = gw_coupling(Cs, Ct, method="entropic", **options)
    assert isinstance(T, np.ndarray) and T.shape == (10, 10)
    np.testing.assert_allclose(T.sum(), 1.0, atol=1e-6)
    np.testing.assert_array_equal(T.argmax(1), perm)
    T_torch = gw_coupling(torch.from_numpy(Cs), torch.from_numpy(Ct), method="entropic", **options)
    assert isinstance(T_torch, torch.Tensor) and T_torch.device == torch.device("cpu")
    np.testing.assert_allclose(T_torch.numpy(), T, atol=1e-8)


def test_medoid_partition_gives_non_empty_clusters():
    x = np.concatenate([np.zeros((3, 2)), np.random.default_rng(7).normal(size=(10, 2))])  # 11 distinct points
    C = distance_matrix(x)
    medoids, cluster = medoid_partition(C, 8)
    assert len(medoids) == cluster.max() + 1 == 8
    assert (np.bincount(cluster) > 0).all()
    assert (cluster[medoids] == np.arange(len(medoids))).all()  # each medoid is in its own cluster
    medoids, cluster = medoid_partition(C, 12)  # more clusters than distinct points: the empty ones are dropped
    assert len(medoids) == cluster.max() + 1 == 11
    assert (np.bincount(cluster) > 0).all()
    y = np.concatenate([np.ones((3, 2)), np.random.default_rng(8).normal(size=(10, 2))])
    T = gw_coupling(C, distance_matrix(y), method="fast", num_clusters=12)
    np.testing.assert_allclose(T.sum(1), 1 / 13, atol=1e-8)
    np.testing.assert_allclose(T.sum(0), 1 / 13, atol=1e-8)


# ---- bad inputs: one clear ValueError each ----


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: segment_features(np.zeros((2, 3))), r"\(N, H, S\)"),
        (lambda: segment_features(np.zeros((2, 3, 4)), np.zeros((2, 4, 1)), "state_actions"), "segment actions"),
        (lambda: segment_features(np.full((2, 3, 4), np.nan)), "NaN"),
        (lambda: distance_matrix(np.array([[0.0, np.nan], [1.0, 2.0]])), "NaN"),
        (lambda: distance_matrix(np.zeros((3, 2)), metric="hamming"), "unknown metric"),
        (lambda: gw_coupling(np.zeros((3, 4)), np.zeros((3, 3))), "square"),
        (lambda: gw_coupling(np.full((3, 3), np.nan), np.zeros((3, 3))), "NaN"),
        (lambda: gw_coupling(np.zeros((3, 3)), np.zeros((3, 3)), method="sinkhorn"), "unknown GW method"),
        (lambda: gw_coupling(np.zeros((3, 3)), np.zeros((3, 3)), epsilon=0.1), "unknown option"),
        (lambda: gw_coupling(np.eye(3), np.eye(3), method="fast", num_clusters=1), "num_clusters"),
        (lambda: transfer_labels(np.eye(3), ([0], [5]), [1.0], ([0], [1])), r"\[0, 3\)"),
        (lambda: transfer_labels(np.eye(3), ([0], [1]), [1.0], ([0, 1], [1])), "one length"),
        (lambda: transfer_labels(np.eye(3), ([0], [1]), [1.0, 0.0], ([0], [1])), "one per source pair"),
        (lambda: transfer_labels(np.eye(3), ([0], [1]), [np.nan], ([0], [1])), "NaN"),
        (lambda: transfer_labels(np.eye(3), ([0], [1]), [1.5], ([0], [1])), r"\[0, 1\]"),
        (lambda: transfer_labels(np.full((3, 3), np.nan), ([0], [1]), [1.0], ([0], [1])), "NaN"),
        (lambda: transfer_labels(-np.eye(3), ([0], [1]), [1.0], ([0], [1])), "non-negative"),
        (lambda: transfer_labels(np.eye(3), ([0], [1]), [1.0], ([0], [1]), tie_band=0.7), "tie_band"),
        (lambda: transfer_accuracy(np.zeros(3), np.zeros(4)), "one shape"),
    ],
)
def test_bad_inputs_raise_one_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---- scripts/benchmark.py --only gw ----


def test_benchmark_gw_prints_exact_and_fast_rows(tmp_path, capsys):
    import json

    from script_helpers import load_script

    out = tmp_path / "gw.json"
    threads = torch.get_num_threads()
    try:
        load_script("benchmark").main(
            ["--only", "gw", "--gw-sizes", "12,24", "--gw-episodes", "5", "--threads", "1", "--out", str(out)]
        )
    finally:
        torch.set_num_threads(threads)  # the script sets torch's threads for the whole process
    rows = json.loads(out.read_text())["results"]
    assert [(r["segments"], r["method"]) for r in rows] == [(12, "exact"), (12, "fast"), (24, "exact"), (24, "fast")]
    for row in rows:
        assert row["seconds"] > 0 and row["peak_mb"] >= 0 and 0 <= row["accuracy"] <= 1
    assert "speedup=" in capsys.readouterr().out


def test_benchmark_gw_refuses_a_bad_size_list(capsys):
    from script_helpers import load_script

    with pytest.raises(SystemExit):
        load_script("benchmark").main(["--only", "gw", "--gw-sizes", "500,2"])
    assert "--gw-sizes: must be >= 4, got 2" in capsys.readouterr().err

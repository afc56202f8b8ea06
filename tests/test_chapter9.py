"""The chapter's motivations as properties: equivariance of convolution to translation (and
where stride breaks it), invariance of max pooling to small shifts, maxout's invariance to
permuting its pieces; and the guide's figure command."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import convlab
from convlab import figures


def padded_signal(rng, n, margin):
    x = np.zeros((1, 2, n, n))
    x[:, :, margin:n - margin, margin:n - margin] = rng.normal(size=(1, 2, n - 2 * margin, n - 2 * margin))
    return x


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 16), dy=st.integers(-3, 3), dx=st.integers(-3, 3), k=st.sampled_from([1, 3, 5]))
def test_convolution_commutes_with_translation(seed, dy, dx, k):
    rng = np.random.default_rng(seed)
    x, w = padded_signal(rng, 16, 3 + k), rng.normal(size=(3, 2, k, k))

    def shift(a):
        return np.roll(a, (dy, dx), axis=(2, 3))

    np.testing.assert_allclose(convlab.conv2d(shift(x), w, padding="same"), shift(convlab.conv2d(x, w, padding="same")),
                               atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 16), s=st.integers(1, 3))
def test_stride_two_is_equivariant_to_even_shifts_only(seed, s):
    rng = np.random.default_rng(seed)
    x, w = np.zeros((1, 2, 24)), rng.normal(size=(2, 2, 3))
    x[:, :, 8:16] = rng.normal(size=(1, 2, 8))
    y = convlab.conv1d(x, w, padding=1, stride=2)
    np.testing.assert_allclose(convlab.conv1d(np.roll(x, 2 * s, axis=2), w, padding=1, stride=2),
                               np.roll(y, s, axis=2), atol=1e-12)
    odd = convlab.conv1d(np.roll(x, 2 * s - 1, axis=2), w, padding=1, stride=2)
    assert min(np.abs(odd - np.roll(y, t, axis=2)).max() for t in range(-10, 11)) > 1e-6


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2 ** 16), k=st.integers(2, 5))
def test_max_pooling_ignores_shifts_that_keep_the_maximum_inside(seed, k):
    x = np.random.default_rng(seed).normal(size=(1, 1, 30))
    shifted = np.roll(x, 1, axis=2)
    y, ys = convlab.max_pool1d(x, k, stride=1), convlab.max_pool1d(shifted, k, stride=1)
    kept = 0
    for i in range(1, y.shape[2]):
        # window i sees x[i:i+k] before and x[i-1:i+k-1] after; where the larger window's
        # maximum is in their overlap, the output does not move
        if 1 <= int(np.argmax(x[0, 0, i - 1:i + k])) <= k - 1:
            assert ys[0, 0, i] == y[0, 0, i]
            kept += 1
    assert kept > 0 or k == 2


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 16), pieces=st.integers(2, 4))
def test_maxout_is_invariant_to_which_piece_fires(seed, pieces):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 3 * pieces, 4, 5))
    perm = np.concatenate([g * pieces + rng.permutation(pieces) for g in range(3)])
    np.testing.assert_array_equal(convlab.maxout(x[:, perm], pieces), convlab.maxout(x, pieces))
    np.testing.assert_array_equal(convlab.maxout(x, pieces), x.reshape(2, 3, pieces, 4, 5).max(axis=2))


def test_figures_command(tmp_path):
    numbers = figures.main(["--out", str(tmp_path)])
    for name in list(figures.FIGURES) + ["gabor_functions.png"]:
        size = (tmp_path / name).stat().st_size
        assert 1000 < size < 200_000, name
    assert numbers["sparse_interactions.png"]["receptive_field_by_depth"] == [3, 5, 7]
    assert numbers["sparse_interactions.png"]["nonzeros"] == 3 * 13 - 2
    eq = numbers["equivariance.png"]
    assert eq["stride1_max_error"] < 1e-12 and eq["stride2_shift5_min_error"] > 0.1
    pool = numbers["pooling_invariance.png"]
    assert pool["pooled_changed"] < pool["detector_changed"]
    mo = numbers["maxout_invariance.png"]
    assert mo["maxout_range"][0] > 0.8 * mo["maxout_range"][1]
    assert mo["single_filter_range"][0] < 0.1 * mo["single_filter_range"][1]
    edge = numbers["edge_detection.png"]
    assert edge["conv_matrix_matches"] and edge["conv_matrix_nonzeros"] == 2 * edge["output"][0] * edge["output"][1]

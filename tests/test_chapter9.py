"""The chapter's statements as properties: convolution commutes (cross-correlation does not),
equivariance of convolution to translation (and where stride breaks it), a strided
convolution is a sampled one, invariance of max pooling to small shifts and of global
pooling to every shift, maxout's invariance to permuting its pieces; and the guide's figure
command with the numbers its pages quote."""
import re
from pathlib import Path

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
@given(seed=st.integers(0, 2 ** 16), n=st.integers(1, 12), k=st.integers(1, 12))
def test_convolution_commutes_and_cross_correlation_reverses(seed, n, k):
    # eq. 9.4-9.5: (I * K) = (K * I); cross-correlation of K with I is that of I with K reversed
    rng = np.random.default_rng(seed)
    i, kern = rng.normal(size=(1, 1, n)), rng.normal(size=(1, 1, k))
    np.testing.assert_allclose(convlab.conv1d(i, kern, padding="full", flip=True),
                               convlab.conv1d(kern, i, padding="full", flip=True), atol=1e-12)
    np.testing.assert_allclose(convlab.conv1d(i, kern, padding="full"),
                               convlab.conv1d(kern, i, padding="full")[..., ::-1], atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 16), s=st.integers(1, 4), k=st.integers(1, 5), pad=st.integers(0, 2))
def test_strided_convolution_is_the_unit_stride_one_sampled(seed, s, k, pad):
    # Fig. 9.12: stride s computes the stride-1 output at every s-th position only
    rng = np.random.default_rng(seed)
    x, w = rng.normal(size=(2, 3, 11, 13)), rng.normal(size=(4, 3, k, k))
    np.testing.assert_allclose(convlab.conv2d(x, w, stride=s, padding=pad),
                               convlab.conv2d(x, w, padding=pad)[:, :, ::s, ::s], atol=1e-12)


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
@given(seed=st.integers(0, 2 ** 16), dy=st.integers(0, 9), dx=st.integers(0, 9))
def test_global_pooling_cannot_see_where(seed, dy, dx):
    # section 9.4: pooling over the whole plane is an infinitely strong prior of invariance to
    # (circular) translation, so no layer after it can tell where a feature was
    x = np.random.default_rng(seed).normal(size=(2, 3, 10, 10))
    shifted = np.roll(x, (dy, dx), axis=(2, 3))
    np.testing.assert_array_equal(convlab.adaptive_max_pool2d(shifted, 1), convlab.adaptive_max_pool2d(x, 1))
    np.testing.assert_allclose(convlab.adaptive_avg_pool2d(shifted, 1), convlab.adaptive_avg_pool2d(x, 1), atol=1e-12)


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
    smooth = numbers["smoothing.png"]
    assert smooth["matches_numpy_convolve"] and smooth["rms_error_smoothed"] < 0.6 * smooth["rms_error_measurements"]
    assert numbers["sparse_interactions.png"]["receptive_field_by_depth"] == [3, 5, 7]
    assert numbers["sparse_interactions.png"]["nonzeros"] == 3 * 13 - 2
    eq = numbers["equivariance.png"]
    assert eq["stride1_max_error"] < 1e-12 and eq["stride2_shift5_min_error"] > 0.1
    pool = numbers["pooling_invariance.png"]
    assert pool["pooled_changed"] < pool["detector_changed"]
    mo = numbers["maxout_invariance.png"]
    assert mo["maxout_range"][0] > 0.8 * mo["maxout_range"][1]
    assert mo["single_filter_range"][0] < 0.1 * mo["single_filter_range"][1]
    prior = numbers["strong_prior.png"]
    assert prior["distinct_values"] == list(range(1, 10)) and prior["dense_parameters"] == 36 * 36
    # a 3x3 'same' kernel on 6x6: each tap reaches (6 - |dy|) (6 - |dx|) outputs
    assert prior["nonzeros"] == sum((6 - abs(dy)) * (6 - abs(dx)) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    conn = numbers["connectivity.png"]
    assert [conn[k]["distinct_nonzeros"] for k in ("local", "tiled, t = 2", "convolution")] == [18, 6, 3]
    ps = numbers["padding_and_stride.png"]
    assert ps["widths"]["valid"] == [16, 11, 6, 1] and set(ps["widths"]["same"]) == {16}
    assert ps["widths"]["full"] == [16, 21, 26, 31, 36] and ps["stride2_max_error"] < 1e-12
    assert all(s["pooled"] == [4, 4] and s["conv"] == s["input"] for s in numbers["variable_size.png"]["shapes"])
    assert len({tuple(s["input"]) for s in numbers["variable_size.png"]["shapes"]}) == 2
    assert numbers["separable.png"]["max_difference_to_direct"] < 1e-12
    edge = numbers["edge_detection.png"]
    assert edge["conv_matrix_matches"] and edge["conv_matrix_nonzeros"] == 2 * edge["output"][0] * edge["output"][1]


def test_guide_pages_link_to_files_that_exist():
    guide = Path(__file__).resolve().parent.parent / "docs" / "chapter9"
    pages = sorted(guide.glob("*.md"))
    assert len([p for p in pages if re.match(r"\d\d-", p.name)]) == 10
    index = (guide / "README.md").read_text()
    for page in pages:
        assert page.name == "README.md" or f"({page.name})" in index, page.name
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to missing {target}"

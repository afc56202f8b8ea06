"""direct and im2col on the stride-phase grid: the layout's corner cases (exact columns, no-copy
stride 1, chunking, sample blocks), the phases' adjoint, the plan the cost model reads; every
algorithm on empty, non-contiguous and transposed operands."""
import math

import numpy as np
import pytest
from oracles import args_of, naive_all, operands, serving

import convlab
from convlab import _cost
from convlab.reference import direct, im2col, patches, phases


def test_layout_corner_cases_use_the_paths_they_should():
    # Stride 1 without padding, one sample per block: the input is its own phase (no copy);
    # small planes are flattened several samples at a time (a copy).
    x, w = operands((2, 3, 40, 40), (4, 3, 1, 1))
    args = args_of(x, w, {})
    assert phases.trivial(args.geom) and np.shares_memory(phases.split(x, args, phases.plan(args)), x)
    x, w = operands((2, 3, 8, 8), (4, 3, 1, 1))
    args = args_of(x, w, {})
    assert phases.plan(args).samples == 2 and not np.shares_memory(phases.split(x, args, phases.plan(args)), x)
    # 7x7 with padding 1: 81 grid cells for 49 outputs, so im2col gathers the outputs' columns
    # when there are enough output channels to pay for the gather; 56x56: 2% waste, ranges.
    small = args_of(*operands((8, 4, 7, 7), (64, 4, 3, 3)), dict(padding=1))
    few = args_of(*operands((8, 4, 7, 7), (4, 4, 3, 3)), dict(padding=1))
    large = args_of(*operands((1, 4, 56, 56), (64, 4, 3, 3)), dict(padding=1))
    assert im2col.exact_columns(small, phases.plan(small)) is not None
    assert im2col.exact_columns(few, phases.plan(few)) is None
    assert im2col.exact_columns(large, phases.plan(large)) is None
    # Small planes are flattened several samples at a time; large ones one per block.
    assert phases.plan(small).samples == 8 and phases.plan(large).samples == 1


@pytest.mark.parametrize("x_shape,w_shape,params", [((8, 4, 7, 7), (64, 4, 3, 3), dict(padding=1)),
                                                    ((1, 16, 40, 40), (64, 16, 3, 3), dict(stride=2)),
                                                    ((3, 4, 30, 20), (8, 2, 2, 3), dict(groups=2, padding=1))])
def test_the_cost_model_counts_the_chunks_that_run(x_shape, w_shape, params, monkeypatch):
    """The cost model's product counts are those of the executed chunks: it reads their plans."""
    x, w = operands(x_shape, w_shape, np.float32)
    args = args_of(x, w, params)
    calls = []
    for module in (direct, im2col, patches):
        real = module.matmul
        monkeypatch.setattr(module, "matmul", lambda *a, real=real, **k: calls.append(1) or real(*a, **k))
    old = convlab.set_workspace_limit(1 << 16)  # small chunks: several per block
    try:
        direct.forward(x, w, args)
        taps = math.prod(w_shape[2:])
        assert len(calls) == _cost.features("direct", args, np.float32)[2] // args.groups
        assert len(calls) == taps * direct.forward_plan(args, x.itemsize).chunk_count > taps
        calls.clear()
        im2col.prepare(x, w, args).forward(x, w)
        if patches.serves(args):  # strided: the channel-last patches, one product per chunk and group
            assert len(calls) == _cost.features("im2col", args, np.float32)[2] > args.groups
        else:
            p = im2col.column_plan(args, x.itemsize)[0]
            assert len(calls) == p.chunk_count == len(list(p.chunks()))
            assert _cost.features("im2col", args, np.float32)[2] == p.chunk_count * (taps + args.groups)
    finally:
        convlab.set_workspace_limit(old)


@pytest.mark.parametrize("limit", [1, None])  # every chunk as small as it can be; one chunk per block
@pytest.mark.parametrize("x_shape,w_shape,params", [((8, 4, 7, 7), (64, 4, 3, 3), dict(padding=1)),
                                                    ((8, 4, 7, 7), (6, 4, 3, 3), dict(padding=1)),
                                                    ((6, 4, 9, 9), (6, 2, 3, 3), dict(stride=2, groups=2)),
                                                    ((6, 4, 9, 8), (64, 2, 3, 3), dict(stride=2, groups=2,
                                                                                       padding=1, dilation=2)),
                                                    ((3, 2, 5, 40), (2, 2, 3, 3), dict(padding=(0, 2)))])
def test_chunks_and_blocks_agree_with_the_oracle(x_shape, w_shape, params, limit):
    x, w = operands(x_shape, w_shape)
    gy = np.random.default_rng(3).standard_normal(convlab.conv2d(x, w, **params).shape)
    ref = naive_all(x, w, gy, params)
    old = convlab.set_workspace_limit(limit or convlab.workspace_limit())
    try:
        for algorithm in ("direct", "im2col"):
            got = (convlab.conv2d(x, w, algorithm=algorithm, **params),) + \
                convlab.conv2d_backward(gy, x, w, algorithm=algorithm, **params)[:2]
            for a, b in zip(got, ref):
                np.testing.assert_allclose(a, b, atol=1e-11)
    finally:
        convlab.set_workspace_limit(old)


@pytest.mark.parametrize("stride,padding", [((1, 1), ((0, 0), (0, 0))), ((2, 3), ((1, 2), (0, 1))),
                                            ((3, 1), ((2, 0), (1, 1)))])
def test_phases_and_their_adjoint(stride, padding):
    """<to_phases(x), y> = <x, from_phases(y)>, and every input cell lands in one phase."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 7, 8))
    w = np.zeros((1, 3, 3, 2))
    args = args_of(x, w, dict(stride=stride, padding=padding, dilation=(1, 2)))
    layout = phases.phase_layout(args.geom)
    ph = phases.to_phases(x, args.geom, layout)
    y = rng.standard_normal(ph.shape)
    assert np.isclose((ph * y).sum(), (x * phases.from_phases(y, args.geom, layout)).sum())
    np.testing.assert_array_equal(phases.from_phases(ph, args.geom, layout), x)


def test_empty_and_non_contiguous_operands(algorithm):
    rng = np.random.default_rng(5)
    w = np.ones((3, 2, 3, 3)) * rng.standard_normal((3, 2, 1, 1))  # rank-1, so every algorithm serves
    reason = serving(algorithm, np.zeros((1, 2, 6, 6)), w, dict(padding=1))
    if reason:
        pytest.skip(reason)
    for x_shape, w_shape in [((0, 2, 6, 6), (3, 2, 3, 3)), ((2, 0, 6, 6), (3, 0, 3, 3)), ((2, 2, 6, 6), (0, 2, 3, 3))]:
        x, wz = np.zeros(x_shape), np.zeros(w_shape)
        y = convlab.conv2d(x, wz, padding=1, algorithm=algorithm)
        gx, gw, _ = convlab.conv2d_backward(y, x, wz, padding=1, algorithm=algorithm)
        assert y.shape == (x_shape[0], w_shape[0], 6, 6) and not y.any()
        assert gx.shape == x.shape and gw.shape == wz.shape and not gw.any()
    base = rng.standard_normal((3, 4, 12, 10))
    for x in (base[:, ::2, ::2, ::-1], base.transpose(0, 1, 3, 2)[:, 1:3]):
        ref = convlab.conv2d(np.ascontiguousarray(x), w, padding=1, algorithm="naive")
        np.testing.assert_allclose(convlab.conv2d(x, w, padding=1, algorithm=algorithm), ref, atol=1e-11)


def test_transposed_convolution_and_its_backward(algorithm):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 4, 5, 6))
    w = np.ones((4, 3, 3, 3)) * rng.standard_normal((4, 3, 1, 1))  # rank-1 3x3: every algorithm serves
    if algorithm == "cuda":
        pytest.skip("the CUDA kernels take CuPy arrays (tests/gpu)")
    kw = dict(padding=1) if algorithm == "winograd" else dict(stride=2, padding=(1, 0), output_padding=1,
                                                             dilation=(1, 2))
    ref = convlab.conv_transpose2d(x, w, algorithm="naive", **kw)
    np.testing.assert_allclose(convlab.conv_transpose2d(x, w, algorithm=algorithm, **kw), ref, atol=1e-11)
    gy = rng.standard_normal(ref.shape)
    want = convlab.conv_transpose2d_backward(gy, x, w, algorithm="naive", **kw)
    got = convlab.conv_transpose2d_backward(gy, x, w, algorithm=algorithm, **kw)
    for a, b in zip(got[:2], want[:2]):
        np.testing.assert_allclose(a, b, atol=1e-11)


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
def test_1x1_without_padding_is_a_product_on_the_input_itself(algorithm):
    """A 1x1 kernel without padding runs as one batched product on the (N, C, H*W) views: the
    only memory a pass allocates is its result (tracemalloc sees NumPy's buffers), so no copy
    of the input is made with stride 1; with stride 2 the strided view (a quarter) is copied."""
    import tracemalloc

    from convlab.reference import pointwise

    x, w = operands((4, 64, 16, 16), (32, 64, 1, 1))
    gy = np.random.default_rng(1).standard_normal((4, 32, 16, 16))
    args = args_of(x, w, {})
    assert convlab.conv.ALGORITHMS[algorithm].prepare(x, w, args).run is pointwise
    ref = naive_all(x[:1, :, :6, :5], w, gy[:1, :, :6, :5], {})
    for stride, extra in ((1, 0), (2, x.nbytes // 4)):
        out = gy[:, :, ::stride, ::stride].copy()
        for run, result in ((lambda: convlab.conv2d(x, w, stride=stride, algorithm=algorithm), out.nbytes),
                            (lambda: convlab.conv2d_backward(out, x, w, stride=stride, algorithm=algorithm,
                                                             needs=(True, False, False))[0], x.nbytes),
                            (lambda: convlab.conv2d_backward(out, x, w, stride=stride, algorithm=algorithm,
                                                             needs=(False, True, False))[1], 4 * w.nbytes)):
            tracemalloc.start()
            run()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak <= result + extra + 64 * 1024, (stride, peak, result, extra)
    # and the values: the loop oracle on a corner of the same operands
    y = convlab.conv2d(x[:1, :, :6, :5], w, algorithm=algorithm)
    gx, gw, _ = convlab.conv2d_backward(gy[:1, :, :6, :5], x[:1, :, :6, :5], w, algorithm=algorithm)
    for a, b in zip((y, gx, gw), ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)

"""convlab.dask against the in-memory ops: random shapes, chunkings that cut through windows,
strides that do not divide the chunks, uneven and tiny chunks, batch chunking; the backward
against the in-memory backward and finite differences; the halo plan's invariants; bad input."""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import convlab

da = pytest.importorskip("dask.array", reason="Dask is not installed (pip install 'convlab[dask]')")
import dask  # noqa: E402

cd = pytest.importorskip("convlab.dask")

from oracles import assert_close, conv_problems, operands, torch_or_none  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def compute(*arrays):
    return dask.compute(*arrays, scheduler="sync")


@st.composite
def partitions(draw, n, max_parts=5):
    """Chunk sizes summing to ``n``: uneven, often smaller than a kernel's reach."""
    cuts = sorted(draw(st.sets(st.integers(1, max(1, n - 1)), max_size=min(max_parts, n - 1))) if n > 1 else [])
    bounds = [0] + cuts + [n]
    return tuple(b - a for a, b in zip(bounds, bounds[1:]))


@st.composite
def conv_cases(draw):
    """A random problem of ``oracles.conv_problems`` with a chunking of x (channel chunks of
    whole groups), ``flip``, a bias or none, and a seed."""
    nd, x_shape, w_shape, params = draw(conv_problems())
    groups = params["groups"]
    chunks = (draw(partitions(x_shape[0])), (x_shape[1] // groups,) * groups) + tuple(
        draw(partitions(v)) for v in x_shape[2:])
    return dict(nd=nd, x_shape=x_shape, w_shape=w_shape, params=params, chunks=chunks,
                flip=draw(st.booleans()), bias=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


def case_operands(case, dtype=np.float64):
    x, w = operands(case["x_shape"], case["w_shape"], dtype, case["seed"])
    b = np.random.default_rng(case["seed"] + 1).standard_normal(case["w_shape"][0]).astype(dtype) \
        if case["bias"] else None
    return x, w, b


def in_memory(nd, name, suffix=""):
    return getattr(convlab, f"{name}{nd}d{suffix}")


def on_dask(nd, name, suffix=""):
    return getattr(cd, f"{name}{nd}d{suffix}")


# ----------------------------------------------------------------------------- the plan

@st.composite
def axis_cases(draw):
    n = draw(st.integers(1, 40))
    k, s, d = draw(st.integers(1, 6)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    lo, hi = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    return n, draw(partitions(n, 8)), k, s, d, (lo, hi)


@SETTINGS
@given(axis_cases(), st.booleans())
@example((1, (1,), 1, 2, 1, (1, 0)), False)  # a chunk whose one window reads only padding
def test_plan_assigns_each_window_once_within_its_block(case, ceil_mode):
    n, chunks, k, s, d, pad = case
    try:
        geom = convlab._params.make_geometry((n,), (k,), (s,), (d,), (pad,), ceil_mode=ceil_mode)
    except ValueError:
        assume(False)
    out, span = geom.out_size[0], d * (k - 1) + 1
    plan = cd.axis_plan(n, chunks, k, s, d, pad, out)
    assert sum(plan.chunks) == n
    bounds = set(np.cumsum(plan.chunks).tolist())
    assert bounds <= set(np.cumsum(chunks).tolist())  # merging keeps the other boundaries
    if len(plan.chunks) > 1:
        assert sum(plan.depth) == span - 1 and plan.depth[0] == min(pad[0], span - 1)
        assert min(plan.chunks) >= max(plan.depth)  # Dask serves a halo from the adjacent chunk only
    # the windows of the chunks tile 0 .. out-1 in order: none computed twice, none missed
    flat = [j for j0, j1 in plan.windows for j in range(j0, j1)]
    assert flat == list(range(out))
    for i, (j0, j1) in enumerate(plan.windows):
        start = plan.block_start(i)
        stop = plan.starts[i] + plan.chunks[i] + (plan.depth[1] if i < len(plan.chunks) - 1 else 0)
        for j in range(j0, j1):
            first, last = j * s - pad[0], j * s - pad[0] + span - 1
            assert max(first, 0) >= start and min(last, n - 1) < stop, (i, j)
        local = plan.local(i)
        if local is not None:  # the block's in-memory problem is valid and gives exactly its windows
            c0, c1, local_pad, ceil = local
            assert start <= c0 <= c1 <= stop  # c0 == c1: windows that read only padding
            local_geom = convlab._params.make_geometry((c1 - c0,), (k,), (s,), (d,), (local_pad,), ceil_mode=ceil)
            assert local_geom.out_size == (j1 - j0,), (i, local, plan)


def test_stride_aligned_chunks_give_chunks_divided_by_the_stride():
    x = da.zeros((1, 1, 64, 48), chunks=(1, 1, 16, 12))
    y = cd.conv2d(x, np.ones((1, 1, 3, 3)), stride=(2, 3), padding="same")
    assert y.chunks[2:] == ((8, 8, 8, 8), (4, 4, 4, 4))
    p = cd.max_pool2d(x, 2)
    assert p.chunks[2:] == ((8, 8, 8, 8), (6, 6, 6, 6))


# ----------------------------------------------------------------------------- forward

@SETTINGS
@given(conv_cases())
def test_conv_equals_in_memory(case):
    """Bit for bit with the loop oracle (its sums run in one order whatever the extent); to
    rounding with "direct", whose BLAS products may group the channel sums by the extent."""
    x, w, b = case_operands(case)
    nd, params = case["nd"], case["params"]
    xd = da.from_array(x, chunks=case["chunks"])
    try:
        ref = in_memory(nd, "conv")(x, w, b, **params, flip=case["flip"], algorithm="naive")
    except ValueError:
        assume(False)
    y = on_dask(nd, "conv")(xd, w, b, **params, flip=case["flip"], algorithm="naive")
    assert y.shape == ref.shape
    got, = compute(y)
    np.testing.assert_array_equal(got, ref)
    got, = compute(on_dask(nd, "conv")(xd, w, b, **params, flip=case["flip"], algorithm="direct"))
    assert_close(got, ref, np.float64)


CHUNKINGS_2D = [
    ((2, 2), 6, (9, 1, 13), (5, 5, 5, 4)),     # batch chunks, a 1-cell chunk, uneven chunks
    ((1, 3), 6, (23,), (19,)),                 # single spatial chunk, batch split unevenly
    ((4,), 6, (2,) * 11 + (1,), (3,) * 6 + (1,)),  # every chunk shorter than the kernel's reach
]


@pytest.mark.parametrize("algorithm", ["naive", "direct", "im2col", "fft", "auto"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunks", CHUNKINGS_2D)
def test_conv2d_every_algorithm(algorithm, dtype, chunks):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 23, 19)).astype(dtype)
    w = rng.standard_normal((6, 2, 3, 4)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    params = dict(stride=(2, 3), padding=((2, 1), (0, 3)), dilation=(2, 1), groups=3)
    ref = convlab.conv2d(x, w, b, **params, algorithm=algorithm)
    got, = compute(cd.conv2d(da.from_array(x, chunks=chunks), w, b, **params, algorithm=algorithm))
    if algorithm == "naive":  # same sums in the same order, whatever the extent
        np.testing.assert_array_equal(got, ref)
    else:
        assert_close(got, ref, dtype, 2 * 12)
    assert got.dtype == dtype


@pytest.mark.parametrize("padding", ["valid", "same", "full", 2, ((0, 3), (1, 0), (2, 2))])
def test_conv3d_and_1d(padding):
    """Depthwise (one channel per group) in 3-D and 1-D, blocks against the whole. Both are
    small enough for one product each (``reference/small.py``), whose sums over taps BLAS
    may order differently for a block than for the whole: equal to rounding."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 9, 8, 7))
    w = rng.standard_normal((4, 1, 3, 2, 3))
    params = dict(stride=(1, 2, 3), padding=padding, dilation=(2, 1, 1), groups=2)
    ref = convlab.conv3d(x, w, **params, algorithm="direct", flip=True)
    got, = compute(cd.conv3d(da.from_array(x, chunks=(1, 2, (4, 5), (3, 3, 2), 7)), w, **params,
                             algorithm="direct", flip=True))
    np.testing.assert_allclose(got, ref, rtol=1e-14, atol=1e-14 * np.abs(ref).max())
    pad1 = padding if isinstance(padding, (str, int)) else [padding[0]]
    x1, w1 = x[:, :, :, 0, 0], w[:, :, :, 0, 0]
    ref1 = convlab.conv1d(x1, w1, stride=2, padding=pad1, groups=2, algorithm="direct")
    got1, = compute(cd.conv1d(da.from_array(x1, chunks=(2, 1, (2, 3, 4))), w1, stride=2, padding=pad1,
                              groups=2, algorithm="direct"))
    np.testing.assert_allclose(got1, ref1, rtol=1e-14, atol=1e-14 * np.abs(ref1).max())


def test_conv_against_the_loop_oracle_on_a_large_chunked_image():
    """Blocks that cut a 7x7 window many times over, checked against the book's loops."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1, 40, 37))
    w = rng.standard_normal((1, 1, 7, 7))
    got, = compute(cd.conv2d(da.from_array(x, chunks=(1, 1, 8, (5, 12, 20))), w, padding="same", stride=2))
    ref = convlab.conv2d(x, w, padding="same", stride=2, algorithm="naive")
    assert_close(got, ref, np.float64)


@pytest.mark.parametrize("nd", [1, 2])
def test_separable_conv(nd):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4) + (21, 18)[:nd])
    factors = [rng.standard_normal((6, 2, k)) for k in (5, 3)[:nd]]
    b = rng.standard_normal(6)
    params = dict(stride=2, padding="same", dilation=(2, 1)[:nd] if nd == 2 else 2)
    ref = in_memory(nd, "separable_conv")(x, factors, b, **params)
    chunks = (1, 2, (6, 2, 13), (4, 14))[:2 + nd]
    got, = compute(on_dask(nd, "separable_conv")(da.from_array(x, chunks=chunks), factors, b, **params))
    np.testing.assert_array_equal(got, ref)
    # and the same result as the convolution with the outer-product kernel
    w = factors[0][..., :, None] * factors[1][..., None, :] if nd == 2 else factors[0]
    assert_close(got, in_memory(nd, "conv")(x, w, b, **params, groups=2), np.float64)


@st.composite
def pool_cases(draw):
    nd = draw(st.sampled_from([1, 2]))
    n = draw(st.lists(st.integers(1, 16), min_size=nd, max_size=nd))
    kernel = draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd))
    padding = [(draw(st.integers(0, k // 2)), draw(st.integers(0, k // 2))) for k in kernel]
    chunks = (draw(partitions(2)), draw(partitions(3))) + tuple(draw(partitions(v)) for v in n)
    return dict(nd=nd, shape=(2, 3, *n), kernel=tuple(kernel), padding=padding, chunks=chunks,
                stride=draw(st.one_of(st.none(), st.lists(st.integers(1, 3), min_size=nd, max_size=nd))),
                dilation=tuple(draw(st.lists(st.integers(1, 2), min_size=nd, max_size=nd))),
                ceil_mode=draw(st.booleans()), include=draw(st.booleans()),
                divisor=draw(st.sampled_from([None, 3])), p=draw(st.sampled_from([1.0, 2.0, 3.5, np.inf])),
                seed=draw(st.integers(0, 2**16)))


@SETTINGS
@given(pool_cases(), st.sampled_from(["max_pool", "avg_pool", "lp_pool"]))
def test_pools_equal_in_memory_bit_for_bit(case, name):
    x = np.random.default_rng(case["seed"]).standard_normal(case["shape"])
    nd = case["nd"]
    lead, kw = (x,), dict(stride=case["stride"], padding=case["padding"], ceil_mode=case["ceil_mode"])
    if name == "max_pool":
        kw["dilation"] = case["dilation"]
    if name == "avg_pool":
        kw.update(count_include_pad=case["include"], divisor_override=case["divisor"])
    if name == "lp_pool":
        lead = (x, case["p"])
    try:
        ref = in_memory(nd, name)(*lead, case["kernel"], **kw)
    except ValueError:
        assume(False)
    y = on_dask(nd, name)(da.from_array(x, chunks=case["chunks"]), *lead[1:], case["kernel"], **kw)
    got, = compute(y)
    np.testing.assert_array_equal(got, ref)


@SETTINGS
@given(pool_cases())
def test_max_pool_indices_equal_in_memory(case):
    """Indices into the whole input plane, made from each block's own: the same ints as in memory
    (-1 where a dilated window holds padding only)."""
    x = np.random.default_rng(case["seed"]).standard_normal(case["shape"])
    nd = case["nd"]
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], ceil_mode=case["ceil_mode"],
              return_indices=True)
    try:
        ref_y, ref_i = in_memory(nd, "max_pool")(x, case["kernel"], **kw)
    except ValueError:
        assume(False)
    y, i = compute(*on_dask(nd, "max_pool")(da.from_array(x, chunks=case["chunks"]), case["kernel"], **kw))
    np.testing.assert_array_equal(y, ref_y)
    assert i.dtype == np.int64
    np.testing.assert_array_equal(i, ref_i)
    # and each index points at its maximum
    flat = x.reshape(x.shape[:2] + (-1,))
    hit = np.take_along_axis(flat, np.maximum(i, 0).reshape(i.shape[:2] + (-1,)), axis=2).reshape(i.shape)
    np.testing.assert_array_equal(np.where(i < 0, -np.inf, hit), y)


@SETTINGS
@given(st.sampled_from([1, 2, 3]), st.data())
def test_adaptive_pools_equal_in_memory(nd, data):
    """PyTorch's bins of the whole axis, cut by chunks (each bin read by the chunk holding its
    first cell): bit for bit, with the indices into the whole plane."""
    n = data.draw(st.lists(st.integers(1, 14), min_size=nd, max_size=nd))
    out = tuple(data.draw(st.one_of(st.none(), st.integers(1, v + 3))) for v in n)
    x = np.random.default_rng(data.draw(st.integers(0, 99))).standard_normal((2, 3, *n))
    xd = da.from_array(x, chunks=(data.draw(partitions(2)), data.draw(partitions(3)))
                       + tuple(data.draw(partitions(v)) for v in n))
    y, i = compute(*on_dask(nd, "adaptive_max_pool")(xd, out, return_indices=True))
    ref_y, ref_i = in_memory(nd, "adaptive_max_pool")(x, out, return_indices=True)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(i, ref_i)
    avg, = compute(on_dask(nd, "adaptive_avg_pool")(xd, out))
    np.testing.assert_array_equal(avg, in_memory(nd, "adaptive_avg_pool")(x, out))


def test_adaptive_pool_against_torch():
    torch = torch_or_none()
    if torch is None:
        pytest.skip("PyTorch is not installed (an optional oracle)")
    x = np.random.default_rng(8).standard_normal((1, 2, 23, 17))
    xd = da.from_array(x, chunks=(1, 1, (7, 9, 7), (5, 12)))
    y, i = compute(*cd.adaptive_max_pool2d(xd, (5, 3), return_indices=True))
    ty, ti = torch.nn.functional.adaptive_max_pool2d(torch.tensor(x), (5, 3), return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(i, ti.numpy())
    avg, = compute(cd.adaptive_avg_pool2d(xd, (5, 3)))
    assert_close(avg, torch.nn.functional.adaptive_avg_pool2d(torch.tensor(x), (5, 3)).numpy(), np.float64)


def test_pool3d():
    x = np.random.default_rng(5).standard_normal((1, 2, 9, 10, 7))
    chunks = (1, 1, (4, 5), (3, 7), (2, 5))
    for name, lead, kw in [("max_pool", (), dict(dilation=(1, 2, 1))), ("avg_pool", (), {}), ("lp_pool", (2.0,), {})]:
        ref = in_memory(3, name)(x, *lead, 3, 2, 1, ceil_mode=True, **kw)
        got, = compute(on_dask(3, name)(da.from_array(x, chunks=chunks), *lead, 3, 2, 1, ceil_mode=True, **kw))
        np.testing.assert_array_equal(got, ref)


@st.composite
def transpose_cases(draw):
    nd = draw(st.sampled_from([1, 2]))
    groups = draw(st.integers(1, 2))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    n = draw(st.lists(st.integers(1, 9), min_size=nd, max_size=nd))
    kernel = draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd))
    stride = draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd))
    dilation = draw(st.lists(st.integers(1, 2), min_size=nd, max_size=nd))
    opad = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)]
    padding = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=nd, max_size=nd))
    batch = draw(st.integers(1, 2))
    chunks = (draw(partitions(batch)), (c_in // groups,) * groups) + tuple(draw(partitions(v)) for v in n)
    return dict(nd=nd, x_shape=(batch, c_in, *n), w_shape=(c_in, c_out // groups, *kernel), chunks=chunks,
                params=dict(stride=tuple(stride), padding=padding, output_padding=tuple(opad), groups=groups,
                            dilation=tuple(dilation)), bias=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


@SETTINGS
@given(transpose_cases())
def test_conv_transpose_equals_in_memory(case):
    """Blocks scatter into overlapping extents that are added back: equal to rounding."""
    x, w = operands(case["x_shape"], case["w_shape"], seed=case["seed"])
    b = np.random.default_rng(case["seed"]).standard_normal(case["w_shape"][1] * case["params"]["groups"]) \
        if case["bias"] else None
    nd = case["nd"]
    try:
        ref = in_memory(nd, "conv_transpose")(x, w, b, **case["params"])
    except ValueError:
        assume(False)
    y = on_dask(nd, "conv_transpose")(da.from_array(x, chunks=case["chunks"]), w, b, **case["params"])
    assert y.shape == ref.shape
    got, = compute(y)
    assert_close(got, ref, np.float64)


def test_conv_transpose_is_the_adjoint_of_conv():
    """<conv_transpose(y), x> = <y, conv(x)> with both ops on Dask arrays (section 9.5), in 3-d."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 9, 7, 6))
    w = rng.standard_normal((6, 2, 3, 2, 3))
    params = dict(stride=(2, 1, 3), padding=((1, 0), (0, 1), (2, 2)), dilation=(1, 2, 1), groups=2)
    y, = compute(cd.conv3d(da.from_array(x, chunks=(1, 2, (4, 5), 3, 6)), w, **params))
    gy = rng.standard_normal(y.shape)
    opad = tuple(n - o for n, o in zip(x.shape[2:], convlab.conv_transpose3d(gy, w, **params).shape[2:]))
    xt, = compute(cd.conv_transpose3d(da.from_array(gy, chunks=(2, 3, 2, (1, 5), 1)), w, **params,
                                      output_padding=opad))
    assert xt.shape == x.shape
    np.testing.assert_allclose(np.vdot(xt, x), np.vdot(gy, y), rtol=1e-11)


@pytest.mark.parametrize("params", [dict(stride=2, padding="same"), dict(dilation=(2, 1), padding=((1, 2), (0, 1))),
                                    dict(stride=(1, 3), padding="full")])
def test_local_and_tiled_conv(params):
    """Each block takes its own output positions' kernels (local) or the tiles rolled to its
    first output (tiled); tiles of 1 are the convolution (eq. 9.10's limits)."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 13, 11))
    xd = da.from_array(x, chunks=(1, 3, (4, 1, 8), (5, 6)))
    out = convlab.conv2d(x, np.ones((1, 3, 3, 2)), **params).shape[2:]
    w, b = rng.standard_normal((4, *out, 3, 3, 2)), rng.standard_normal((4, *out))
    got, = compute(cd.local_conv2d(xd, w, b, **params))
    assert_close(got, convlab.local_conv2d(x, w, b, **params), np.float64)
    w, b = rng.standard_normal((4, 3, 2, 3, 3, 2)), rng.standard_normal(4)
    got, = compute(cd.tiled_conv2d(xd, w, b, **params))
    assert_close(got, convlab.tiled_conv2d(x, w, b, **params), np.float64)
    one, = compute(cd.tiled_conv2d(xd, w[:, :1, :1], b, **params))
    assert_close(one, convlab.conv2d(x, w[:, 0, 0], b, **params, algorithm="naive"), np.float64)


# ----------------------------------------------------------------------------- backward

@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(conv_cases(), st.sampled_from([None, 2]))
def test_conv_backward_equals_in_memory(case, split_every):
    x, w, b = case_operands(case)
    nd, params = case["nd"], case["params"]
    try:
        y = in_memory(nd, "conv")(x, w, b, **params)
    except ValueError:
        assume(False)
    gy = np.random.default_rng(case["seed"] + 1).standard_normal(y.shape)
    ref = in_memory(nd, "conv", "_backward")(gy, x, w, b, **params, flip=case["flip"], algorithm="direct")
    out_chunks = (1, y.shape[1]) + tuple(max(1, v // 2) for v in y.shape[2:])
    got = compute(*(a for a in on_dask(nd, "conv", "_backward")(
        da.from_array(gy, chunks=out_chunks), da.from_array(x, chunks=case["chunks"]), w, b, **params,
        flip=case["flip"], algorithm="direct", split_every=split_every) if a is not None))
    assert len(got) == (3 if case["bias"] else 2)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        assert_close(g, r, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_backward_chunkings_and_gradcheck(dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4, 13, 11)).astype(dtype)
    w = rng.standard_normal((2, 2, 3, 5)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    params = dict(stride=(2, 1), padding="same", dilation=(1, 2), groups=2)
    gy = rng.standard_normal(convlab.conv2d(x, w, b, **params).shape).astype(dtype)
    ref = convlab.conv2d_backward(gy, x, w, b, **params)
    for chunks in [(1, 2, (1, 5, 7), (2, 9)), (3, 4, 13, 11), (2, 4, (4, 4, 5), (3, 3, 3, 2))]:
        xd = da.from_array(x, chunks=chunks)
        got = compute(*cd.conv2d_backward(da.from_array(gy, chunks=(1, 1, 3, 4)), xd, w, b, **params))
        for g, r in zip(got, ref):
            assert g.dtype == dtype
            assert_close(g, r, dtype, 2 * 15 * 7)
        gx = cd.conv2d_backward(da.from_array(gy), xd, w, b, **params)[0]
        assert gx.chunks[:2] == xd.chunks[:2]  # chunked like x; spatial chunks merged at most
        for merged, given_ in zip(gx.chunks[2:], xd.chunks[2:]):
            assert set(np.cumsum(merged)) <= set(np.cumsum(given_))



def test_conv_backward_gradcheck():
    """The Dask backward against finite differences of the forward, with chunks that cut windows
    (the in-memory forward, which the tests above show equal to the Dask one, runs the differences fast)."""
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((2, 1, 3, 2)), rng.standard_normal(2)
    params = dict(stride=(2, 1), padding=((1, 2), (0, 1)), dilation=(1, 2), groups=2)

    def forward(x, w, b):
        return convlab.conv2d(x, w, b, **params)

    def backward(gy, x, w, b):
        return compute(*cd.conv2d_backward(da.from_array(gy, chunks=(2, 1, 2, 2)),
                                           da.from_array(x, chunks=(2, 1, (3, 3), (1, 4))), w, b, **params))

    convlab.gradcheck(forward, backward, [x, w, b])


# ----------------------------------------------------------------------------- array types

class Chunk(np.ndarray):
    """An array type other than NumPy's own, standing in for CuPy's where there is no GPU
    (tests/gpu/test_dask_gpu.py runs CuPy chunks): what holds for it holds for any type that
    the engine's dispatch serves and convlab.dask does not convert."""


@dask.array.dispatch.concatenate_lookup.register(Chunk)
def _concatenate_chunks(arrays, axis=0, out=None):
    """Dask joins a type's blocks with the type's own concatenate (CuPy registers cupy.concatenate);
    NumPy's would return a plain ndarray."""
    return np.concatenate([a.view(np.ndarray) for a in arrays], axis=axis).view(Chunk)


def spy_on(monkeypatch, module, names, seen):
    """Replace ``module.<name>`` by a spy that records the types of the arrays it is given,
    runs the real op on them as NumPy arrays and returns its arrays as ``Chunk``s."""
    def as_chunk(a):
        if isinstance(a, tuple):
            return tuple(as_chunk(v) for v in a)
        return a.view(Chunk) if isinstance(a, np.ndarray) else a

    for name in names:
        def spy(*args, _real=getattr(module, name), _name=name, **kw):
            seen.extend((_name, i, type(a)) for i, a in enumerate(args) if isinstance(a, np.ndarray))
            return as_chunk(_real(*(a.view(np.ndarray) if isinstance(a, Chunk) else a for a in args), **kw))
        monkeypatch.setattr(module, name, spy)


def blocks_of(*arrays):
    """Every output block as computed, before Dask joins them."""
    return compute(*[blk for a in arrays for blk in a.to_delayed().ravel()])


def test_chunks_reach_the_engine_in_their_own_array_type(monkeypatch):
    """Each block calls the engine's public op (its dispatch picks the kernel for the chunk's
    array type) with the chunk as it is, and every output block is what the op returned, or
    made in the chunk's type (empty blocks, the backward's input gradient): never converted."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 4, 13, 11))
    xd = da.from_array(x.view(Chunk), chunks=(1, 2, (5, 6, 2), (4, 7)))
    assert type(xd._meta) is Chunk
    w, b = rng.standard_normal((4, 2, 3, 3)).view(Chunk), rng.standard_normal(4).view(Chunk)  # like the chunks
    seen = []
    spy_on(monkeypatch, convlab, ["conv2d", "conv2d_backward", "max_pool2d", "conv_transpose2d", "tiled_conv2d"],
           seen)
    spy_on(monkeypatch, cd.ref_pool, ["adaptive_max_pool"], seen)
    params = dict(stride=2, padding="valid", groups=2)  # "valid": the last row chunk anchors no window
    y = cd.conv2d(xd, w, b, **params)
    gy = rng.standard_normal(y.shape)
    grads = cd.conv2d_backward(da.from_array(gy.view(Chunk), chunks=(1, 2, 2, 3)), xd, w, b, **params)
    pooled = cd.max_pool2d(xd, 3, 2, 1, ceil_mode=True, return_indices=True)
    outputs = [y, *grads, *pooled, cd.conv_transpose2d(xd, w, stride=3, groups=2),
               cd.tiled_conv2d(xd.rechunk({1: 4}), rng.standard_normal((2, 2, 2, 4, 3, 3)).view(Chunk)),
               *cd.adaptive_max_pool2d(xd, (3, 4), return_indices=True)]
    seen.clear()  # the arguments' checks at build time ran on w's type
    got = blocks_of(*outputs)
    assert seen and set(t for _, _, t in seen) == {Chunk}, set(seen)
    assert {type(blk) for blk in got} == {Chunk}, {type(blk) for blk in got}
    assert 0 in {blk.size for blk in got}  # empty blocks were made too
    assert_close(compute(y)[0].view(np.ndarray), convlab.conv2d(x, w.view(np.ndarray), b.view(np.ndarray), **params),
                 np.float64)


# ----------------------------------------------------------------------------- bad input

def test_bad_input():
    x = da.zeros((2, 4, 16, 16), chunks=(1, 2, 8, 8))
    w = np.ones((4, 2, 3, 3))
    with pytest.raises(TypeError, match="x must be a dask.array.Array"):
        cd.conv2d(np.zeros((2, 4, 16, 16)), w)
    with pytest.raises(TypeError, match="w must be a NumPy or CuPy array"):
        cd.conv2d(x, da.from_array(w), groups=2)
    with pytest.raises(ValueError, match=r"channel chunks \(2, 2\) split a group of C/groups=4"):
        cd.conv2d(x, np.ones((4, 4, 3, 3)))
    with pytest.raises(ValueError, match="split a group"):
        cd.conv2d(da.zeros((1, 6, 8, 8), chunks=(1, 3, 8, 8)), np.ones((3, 2, 3, 3)), groups=3)
    with pytest.raises(ValueError, match="4 dims"):
        cd.conv2d(x[0], w, groups=2)
    with pytest.raises(ValueError, match="unknown algorithm"):
        cd.conv2d(x, w, groups=2, algorithm="magic")
    with pytest.raises(ValueError, match="inograd"):
        cd.conv2d(x, np.ones((4, 2, 5, 5)), groups=2, algorithm="winograd")
    with pytest.raises(TypeError, match="flip"):
        cd.conv2d(x, w, groups=2, flip=1)
    with pytest.raises(TypeError, match="float32 or float64"):
        cd.conv2d(x.astype(int), w.astype(int), groups=2)
    with pytest.raises(ValueError, match="kernel larger"):
        cd.conv2d(x, np.ones((4, 2, 17, 3)), groups=2)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        cd.max_pool2d(x[x[:, 0, 0, 0] > 0], 2)
    with pytest.raises(ValueError, match="at most half"):
        cd.avg_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="p must be > 0"):
        cd.lp_pool2d(x, -1, 2)
    with pytest.raises(ValueError, match="grad_y must have shape"):
        cd.conv2d_backward(da.zeros((2, 4, 3, 3)), x, w, groups=2)
    with pytest.raises(TypeError, match="grad_y must be a dask.array.Array"):
        cd.conv2d_backward(np.zeros((2, 4, 14, 14)), x, w, groups=2)
    with pytest.raises(TypeError, match="factors must be a list"):
        cd.separable_conv2d(x, np.ones((2, 4, 3)))
    with pytest.raises(ValueError, match=r"channel chunks \(2, 2\) split a group of C/groups=4"):
        cd.conv_transpose2d(x, np.ones((4, 2, 3, 3)))
    with pytest.raises(ValueError, match="output_padding"):
        cd.conv_transpose2d(x, np.ones((4, 1, 3, 3)), groups=2, output_padding=1)
    with pytest.raises(ValueError, match=r"channel chunks \(2, 2\) split a group of C/groups=4"):
        cd.tiled_conv2d(x, np.ones((3, 2, 2, 4, 3, 3)))
    with pytest.raises(ValueError, match="one kernel per output position"):
        cd.local_conv2d(x.rechunk({1: 4}), np.ones((3, 2, 2, 4, 3, 3)))
    with pytest.raises(ValueError, match="output_size"):
        cd.adaptive_avg_pool2d(x, 0)
    with pytest.raises(TypeError, match="return_indices"):
        cd.max_pool2d(x, 2, return_indices="yes")

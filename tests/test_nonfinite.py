"""Non-finite operands: a NaN or infinity in x, w or grad_y reaches exactly the outputs whose
sums hold it, in every algorithm and every pool (masks from the geometry, written here);
the examples of the issue that found where it did not; and a guard that nothing hangs."""
import itertools
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import args_of, conv_problems, operands, serving, transpose_params
from test_pool import out_len

import convlab
from convlab.conv import conv, conv_backward, conv_transpose, conv_transpose_backward

ALGORITHMS = ["naive", "direct", "im2col", "fft", "separable", "winograd", "auto"]
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
BAD = [np.nan, np.inf, -np.inf]


# ----------------------------------------------------------------------------- reachability

def _reads(geom, axis):
    """``(out, k, n)`` bool along one axis: output ``j`` reads input cell ``i`` at tap ``m``
    (``j*s + m*d - lo == i``; a tap in the padding reads no cell)."""
    j = np.arange(geom.out_size[axis])[:, None, None]
    m = np.arange(geom.kernel[axis])[None, :, None]
    i = np.arange(geom.in_size[axis])[None, None, :]
    return j * geom.stride[axis] + m * geom.dilation[axis] - geom.pad[axis][0] == i


def _box(vectors):
    """The outer AND of one bool vector per axis."""
    out = np.ones((), bool)
    for v in vectors:
        out = np.logical_and.outer(out, v)
    return out


def reached(args, operand, index, result):
    """Which entries of ``result`` ("y", "gx" or "gw" of eq. 9.7-9.13) hold a term with the
    cell ``index`` of ``operand`` ("x", "w" or "gy"). Every tap of a window multiplies, the
    padding too (0 * inf is NaN), so a weight reaches all of its channel's outputs and an
    output gradient every weight of its channel."""
    geom, nd = args.geom, args.nd
    kg, cg = args.out_channels // args.groups, args.in_channels // args.groups
    shapes = {"y": (args.batch, args.out_channels) + geom.out_size,
              "gx": (args.batch, args.in_channels) + geom.in_size,
              "gw": (args.out_channels, cg) + geom.kernel}
    mask = np.zeros(shapes[result], bool)
    rel = [_reads(geom, a) for a in range(nd)]
    lead, cell = index[:2], index[2:]
    if operand == "x" and result == "y":
        n, c = lead
        mask[n, (c // cg) * kg:(c // cg + 1) * kg] = _box([r[:, :, i].any(axis=1) for r, i in zip(rel, cell)])
    elif operand == "x" and result == "gw":
        n, c = lead
        mask[(c // cg) * kg:(c // cg + 1) * kg, c % cg] = _box([r[:, :, i].any(axis=0) for r, i in zip(rel, cell)])
    elif operand == "w" and result == "y":
        mask[:, lead[0]] = True
    elif operand == "w" and result == "gx":
        k, c = lead
        mask[:, (k // kg) * cg + c] = _box([r[:, m, :].any(axis=0) for r, m in zip(rel, cell)])
    elif operand == "gy" and result == "gx":
        n, k = lead
        mask[n, (k // kg) * cg:(k // kg + 1) * cg] = _box([r[j, :, :].any(axis=0) for r, j in zip(rel, cell)])
    elif operand == "gy" and result == "gw":
        mask[lead[1]] = True
    return mask  # x never reaches gx, nor w gw: those stay finite


def _place(a, rng, bad):
    """A copy of ``a`` with ``bad`` in one random cell, and that cell's index."""
    a = a.copy()
    index = tuple(int(rng.integers(s)) for s in a.shape)
    a[index] = bad
    return a, index


def assert_reaches(result, mask, what):
    __tracebackhide__ = True
    nonfinite = ~np.isfinite(result)
    assert nonfinite.shape == mask.shape, what
    if not np.array_equal(nonfinite, mask):
        wrong = np.argwhere(nonfinite != mask)[:5].tolist()
        pytest.fail(f"{what}: non-finite at {np.argwhere(nonfinite)[:8].tolist()}, expected at "
                    f"{np.argwhere(mask)[:8].tolist()}; first differences {wrong}")


def _problem(case, seed, dtype, algorithm):
    nd, x_shape, w_shape, params = case
    x, w = operands(x_shape, w_shape, dtype, seed, rank_one=algorithm == "separable")
    return nd, x, w, params, np.random.default_rng(seed + 1)


# ----------------------------------------------------------------------------- convolution

@SETTINGS
@given(conv_problems(max_kernel=3), st.sampled_from(["x", "w", "gy"]), st.sampled_from(BAD),
       st.sampled_from([np.float64, np.float32]), st.integers(0, 2**31 - 1))
def test_one_nonfinite_cell_reaches_exactly_its_sums(case, operand, bad, dtype, seed):
    """conv forward, grad_x and grad_w of every algorithm that serves the problem."""
    for algorithm in ALGORITHMS:
        nd, x, w, params, rng = _problem(case, seed, dtype, algorithm)
        args = args_of(x, w, params)
        gy = rng.standard_normal((args.batch, args.out_channels) + args.geom.out_size).astype(dtype)
        ops = dict(x=x, w=w, gy=gy)
        ops[operand], index = _place(ops[operand], rng, bad)
        if serving(algorithm, ops["x"], ops["w"], args=args) or serving(algorithm, ops["gy"], ops["w"], args=args):
            continue  # e.g. winograd for a 2-tap kernel: raises, tested elsewhere
        with np.errstate(invalid="ignore", over="ignore"):
            if operand != "gy":
                y = conv(nd, ops["x"], ops["w"], algorithm=algorithm, **params)
                assert_reaches(y, reached(args, operand, index, "y"), f"{algorithm} forward, {bad} in {operand}")
            gx, gw, _ = conv_backward(nd, ops["gy"], ops["x"], ops["w"], algorithm=algorithm, **params)
        assert_reaches(gx, reached(args, operand, index, "gx"), f"{algorithm} grad_x, {bad} in {operand}")
        assert_reaches(gw, reached(args, operand, index, "gw"), f"{algorithm} grad_w, {bad} in {operand}")


@SETTINGS
@given(conv_problems(max_kernel=3), st.sampled_from(["u", "w", "gy"]), st.sampled_from(BAD),
       st.integers(0, 2**31 - 1))
def test_one_nonfinite_cell_reaches_exactly_its_sums_transposed(case, operand, bad, seed):
    """conv_transpose and its backward: the input ``u`` plays the conv's output gradient, the
    output gradient ``gy`` the conv's input (the masks of :func:`reached` with roles exchanged)."""
    nd, x_shape, w_shape, params = case
    for algorithm in ALGORITHMS:
        _, x, w, _, rng = _problem(case, seed, np.float64, algorithm)
        args = args_of(x, w, params)
        tparams = transpose_params(args)
        u = rng.standard_normal((args.batch, args.out_channels) + args.geom.out_size)
        ops = dict(u=u, w=w, gy=x)
        ops[operand], index = _place(ops[operand], rng, bad)
        if serving(algorithm, ops["u"], ops["w"], args=args) or serving(algorithm, ops["gy"], ops["w"], args=args):
            continue
        role = dict(u="gy", w="w", gy="x")[operand]
        with np.errstate(invalid="ignore", over="ignore"):
            if operand != "gy":
                y = conv_transpose(nd, ops["u"], ops["w"], algorithm=algorithm, **tparams)
                assert_reaches(y, reached(args, role, index, "gx"), f"{algorithm} transposed, {bad} in {operand}")
            gu, gw, _ = conv_transpose_backward(nd, ops["gy"], ops["u"], ops["w"], algorithm=algorithm, **tparams)
        assert_reaches(gu, reached(args, role, index, "y"), f"{algorithm} transposed grad_x, {bad} in {operand}")
        assert_reaches(gw, reached(args, role, index, "gw"), f"{algorithm} transposed grad_w, {bad} in {operand}")


# ----------------------------------------------------------------------------- pools

def _pool_windows(x_shape, op, params):
    """``{output index: [input indices, row-major window order]}`` of a pool, by loops:
    sliding windows (``j*s + m*d - lo`` inside the input), adaptive bins
    ``[floor(j*n/o), ceil((j+1)*n/o))``, or maxout's groups of channels."""
    lead = list(itertools.product(*map(range, x_shape[:2])))
    spatial = x_shape[2:]
    if op == "maxout":
        pieces = params["pieces"]
        return {(n, c // pieces) + i: [(n, c + q) + i for q in range(pieces)]
                for n, c in lead if c % pieces == 0 for i in itertools.product(*map(range, spatial))}
    if op.startswith("adaptive"):
        out = params["output_size"]
        bins = [[(j * n // o, -(-(j + 1) * n // o)) for j in range(o)] for n, o in zip(spatial, out)]
        return {(n, c) + j: [(n, c) + i for i in itertools.product(*(range(*b[jj]) for b, jj in zip(bins, j)))]
                for n, c in lead for j in itertools.product(*map(range, out))}
    kernel, stride, pads = params["kernel"], params["stride"], params["pads"]
    dilation = params.get("dilation", (1,) * len(spatial))
    out = [out_len(n, k, s, d, lo, hi, params["ceil_mode"])
           for n, k, s, d, (lo, hi) in zip(spatial, kernel, stride, dilation, pads)]
    windows = {}
    for j in itertools.product(*map(range, out)):
        cells = []
        for m in itertools.product(*map(range, kernel)):
            i = tuple(jj * s + mm * d - lo for jj, mm, s, d, (lo, _) in zip(j, m, stride, dilation, pads))
            if all(0 <= ii < n for ii, n in zip(i, spatial)):
                cells.append(i)
        windows.update({(n, c) + j: [(n, c) + i for i in cells] for n, c in lead})
    return windows


def _pool_masks(windows, x, y_shape, kind, key, bad, where, p=None):
    """Where ``bad`` at ``key`` of ``where`` ("x" or "gy") makes the pool's output or input
    gradient non-finite: a max passes a window's gradient to its first maximum only (NaN
    is the largest), and an input cell that is not NaN changes no gradient of a max or an
    average; an Lp pool's gradient depends on every cell of the window, but for p = 1
    (``sign(x)``) only on the cell itself."""
    y_mask, gx_mask = np.zeros(y_shape, bool), np.zeros(x.shape, bool)
    for out, cells in windows.items():
        if where == "x":
            hit = key in cells
            if kind == "max":
                y_mask[out] = not cells or (all(c == key for c in cells) if bad == -np.inf else hit)
            else:
                y_mask[out] = hit
            if kind == "lp" and hit and np.isnan(bad):
                gx_mask[key if p == 1 else tuple(np.transpose(cells))] = True
        elif out == key and cells:
            if kind == "max":
                first = max(range(len(cells)), key=lambda q: (x[cells[q]], -q))
                gx_mask[cells[first]] = True
            else:
                gx_mask[tuple(np.transpose(cells))] = True
    return y_mask, gx_mask


@st.composite
def pool_problems(draw):
    """``(op, kind, x_shape, params, call)``: every pool with random sizes and parameters;
    ``call(x)`` and ``call.backward(gy, x)`` run it."""
    op = draw(st.sampled_from(["max_pool", "avg_pool", "lp_pool", "adaptive_max_pool", "adaptive_avg_pool", "maxout"]))
    nd = draw(st.integers(1, 3))
    batch, channels = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    if op == "maxout":
        pieces = draw(st.integers(1, 3))
        shape = (batch, channels * pieces) + tuple(draw(st.integers(1, 3)) for _ in range(nd))
        return op, "max", shape, dict(pieces=pieces), (pieces,)
    if op.startswith("adaptive"):
        spatial = tuple(draw(st.integers(1, 7)) for _ in range(nd))
        out = tuple(draw(st.integers(1, 5)) for _ in range(nd))
        return op, op.split("_")[1], (batch, channels) + spatial, dict(output_size=out), (out,)
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd)) if op == "max_pool" else (1,) * nd
    pads = tuple((draw(st.integers(0, k // 2)), draw(st.integers(0, k // 2))) for k in kernel)
    spatial = tuple(max(1, d * (k - 1) + 1 - lo - hi) + draw(st.integers(0, 4))
                    for k, d, (lo, hi) in zip(kernel, dilation, pads))
    ceil_mode = draw(st.booleans())
    params = dict(kernel=kernel, stride=stride, pads=pads, ceil_mode=ceil_mode, dilation=dilation)
    kw = dict(stride=stride, padding=pads, ceil_mode=ceil_mode)
    if op == "max_pool":
        kw["dilation"] = dilation
    p = (draw(st.sampled_from([1.0, 2.0, 3.5])),) if op == "lp_pool" else ()
    return op, op.split("_")[0], (batch, channels) + spatial, params, p + (kernel,), kw


def _pool_call(op, nd, x, extra, kw):
    if op == "maxout":
        return convlab.maxout(x, *extra)
    return getattr(convlab, f"{op}{nd}d")(x, *extra, **kw)


def _pool_backward(op, nd, gy, x, extra, kw):
    if op == "maxout":
        return convlab.maxout_backward(gy, x, *extra)
    return getattr(convlab, f"{op}{nd}d_backward")(gy, x, *extra, **kw)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(pool_problems(), st.sampled_from(["x", "gy"]), st.sampled_from(BAD), st.integers(0, 2**31 - 1))
def test_one_nonfinite_cell_reaches_exactly_its_windows_in_every_pool(problem, where, bad, seed):
    op, kind, x_shape, params, extra = problem[:5]
    kw = problem[5] if len(problem) > 5 else {}
    nd = len(x_shape) - 2
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 1.5, x_shape) * rng.choice([-1.0, 1.0], x_shape)
    windows = _pool_windows(x_shape, op, params)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        y = _pool_call(op, nd, x, extra, kw)
        gy = rng.standard_normal(y.shape)
        ops = dict(x=x, gy=gy)
        ops[where], key = _place(ops[where], rng, bad)
        y_mask, gx_mask = _pool_masks(windows, x, y.shape, kind, key, bad, where, extra[0])
        if where == "x":
            assert_reaches(_pool_call(op, nd, ops["x"], extra, kw), y_mask, f"{op} forward, {bad} in x")
            if kind != "lp" or np.isnan(bad):  # an infinite cell of an Lp window: the limits differ
                gx = _pool_backward(op, nd, gy, ops["x"], extra, kw)
                assert_reaches(gx, gx_mask, f"{op} backward, {bad} in x")
        else:
            assert_reaches(_pool_backward(op, nd, ops["gy"], x, extra, kw), gx_mask, f"{op} backward, {bad} in gy")


# ----------------------------------------------------------------------------- the examples that found it

@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("algorithm", ["auto", "separable"])
def test_non_finite_kernel_is_never_factored(bad, algorithm):
    """The SVD never sees it ("auto" once picked separable and hung in LAPACK); the result is
    the loop oracle's, all inf (not the zeros of NaN factors accepted with a NaN residual)."""
    w = np.ones((1, 1, 3, 3))
    w[0, 0, 0, 0] = bad
    x = np.ones((1, 1, 7, 7))
    with np.errstate(invalid="ignore"):
        y = convlab.conv2d(x, w, stride=2, algorithm=algorithm)
        ref = convlab.conv2d(x, w, stride=2, algorithm="naive")
    np.testing.assert_array_equal(y, ref)
    assert np.isinf(ref).all() if bad == np.inf else np.isnan(ref).all()
    args = args_of(x, w, dict(stride=2))
    assert convlab.reference.separable.prepare(x, w, args).name == "direct"


def test_separable_refuses_a_residual_that_is_not_a_number():
    """A finite kernel whose squares overflow has a NaN residual: not separable."""
    w = np.full((1, 1, 3, 3), 1e300)
    w[0, 0, 1, 1] = -1e300
    x = np.ones((1, 1, 5, 5))
    with np.errstate(over="ignore", invalid="ignore"):
        reason = convlab.reference.separable.prepare(x, w, args_of(x, w, {}))
    assert isinstance(reason, str) and "not separable" in reason


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_inf_weight_reaches_only_the_input_cells_its_tap_touches(algorithm):
    """Cropped grid cells (here: the gap between the two samples) carry zeros that must not
    meet the inf: the loop oracle and PyTorch give [inf, inf, 2, 1]."""
    x, w, gy = np.ones((2, 1, 4)), np.array([[[np.inf, 1.0, 1.0]]]), np.ones((2, 1, 2))
    with np.errstate(invalid="ignore"):
        gx = convlab.conv1d_backward(gy, x, w, algorithm=algorithm)[0]
        yt = convlab.conv_transpose1d(gy, w, algorithm=algorithm)
    for a in (gx, yt):
        np.testing.assert_array_equal(a[:, 0], [[np.inf, np.inf, 2, 1]] * 2)


@pytest.mark.parametrize("algorithm", ["naive", "direct", "im2col", "fft", "auto"])
def test_nan_input_cell_reaches_only_the_weights_that_read_it(algorithm):
    x = np.zeros((1, 1, 2, 2))
    x[0, 0, 0, 1] = np.nan
    with np.errstate(invalid="ignore"):
        gw = convlab.conv2d_backward(np.ones((1, 1, 2, 1)), x, np.ones((1, 1, 1, 2)), algorithm=algorithm)[1]
    np.testing.assert_array_equal(gw, [[[[0.0, np.nan]]]])


@pytest.mark.parametrize("algorithm", ["naive", "direct", "im2col", "fft", "auto"])
def test_padding_is_a_zero_that_multiplies(algorithm):
    """docs/convolution.md: 0 * inf is NaN in the padding too, as in PyTorch."""
    with np.errstate(invalid="ignore"):
        y = convlab.conv1d(np.ones((1, 1, 2)), np.array([[[np.inf, 1.0]]]), padding=1, algorithm=algorithm)
        gw = convlab.conv1d_backward(np.array([[[np.inf, 1.0, 1.0]]]), np.ones((1, 1, 2)), np.ones((1, 1, 2)),
                                     padding=1, algorithm=algorithm)[1]
    np.testing.assert_array_equal(y, [[[np.nan, np.inf, np.inf]]])
    np.testing.assert_array_equal(gw, [[[np.nan, np.inf]]])


@pytest.mark.parametrize("op", ["adaptive_max_pool", "adaptive_avg_pool"])
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("lead", [(0, 2), (2, 0)])
def test_adaptive_pools_of_nothing_are_empty(op, nd, lead):
    x = np.ones(lead + (5,) * nd)
    y = getattr(convlab, f"{op}{nd}d")(x, 2)
    assert y.shape == lead + (2,) * nd
    assert getattr(convlab, f"{op}{nd}d_backward")(y, x, 2).shape == x.shape


def test_float32_fft_guard_sees_small_planes():
    """A 12-cell signal whose first half is 1e4 times larger: float64 transforms keep the
    small half's outputs within float32's 1e-4 (a single region lost 8.4e-4)."""
    x = np.ones((1, 1, 12))
    x[..., :6] = 1e4
    w = np.random.default_rng(0).standard_normal((1, 1, 3))
    ref = convlab.conv1d(x, w, algorithm="naive")[..., 6:]
    y = convlab.conv1d(x.astype(np.float32), w.astype(np.float32), algorithm="fft")[..., 6:]
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5


@pytest.mark.parametrize("call", [
    lambda: convlab.conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 3)), padding=2**62),
    lambda: convlab.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), padding=(0, 2**62)),
    lambda: convlab.max_pool1d(np.ones((1, 1, 4)), 2**62, padding=2**61),
    lambda: convlab.im2col(np.ones((1, 1, 4)), 3, padding=2**62),
    lambda: convlab.local_conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 1, 3)), padding=2**62),
])
def test_padding_too_large_for_any_array_names_padding(call):
    with pytest.raises(ValueError, match="padding"):
        call()


def test_transposed_output_too_large_for_any_array_names_stride():
    with pytest.raises(ValueError, match="stride"):
        convlab.conv_transpose1d(np.ones((1, 1, 4)), np.ones((1, 1, 3)), stride=2**62)


# ----------------------------------------------------------------------------- nothing hangs

HANG_SCRIPT = textwrap.dedent("""
    import itertools, sys
    import numpy as np
    import convlab
    np.seterr(all="ignore")

    def call(f, *args, **kw):
        try:
            f(*args, **kw)
        except ValueError as e:  # an algorithm that cannot serve the shapes says so
            assert "algorithm=" in str(e), e

    for bad, where, algorithm in itertools.product([np.inf, -np.inf, np.nan], "xwg", {algorithms!r}):
        print(bad, where, algorithm, flush=True)  # the last line says what hung
        x, w, g = np.ones((2, 2, 7, 7)), np.ones((2, 2, 3, 3)), np.ones((2, 2, 5, 5))
        {{"x": x, "w": w, "g": g}}[where][1, 1, 1, 2] = bad
        for dtype in (np.float32, np.float64):
            xd, wd, gd = x.astype(dtype), w.astype(dtype), g.astype(dtype)
            call(convlab.conv2d, xd, wd, algorithm=algorithm)
            call(convlab.conv2d, xd, wd, stride=2, padding=1, algorithm=algorithm)
            call(convlab.conv2d_backward, gd, xd, wd, algorithm=algorithm)
            call(convlab.conv_transpose2d_backward, xd, gd, wd, algorithm=algorithm)
            convlab.choose_algorithm(xd.shape, wd.shape, w=wd, dtype=dtype)
        for pool in ("max_pool2d", "avg_pool2d", "adaptive_max_pool2d", "adaptive_avg_pool2d"):
            y = getattr(convlab, pool)(x, 2)
            getattr(convlab, pool + "_backward")(np.full_like(y, bad), x, 2)
        y = convlab.lp_pool2d(x, 2.0, 2)
        convlab.lp_pool2d_backward(np.full_like(y, bad), x, 2.0, 2)
    print("done", flush=True)
""")


def test_nothing_hangs_on_non_finite_operands():
    """Every algorithm, forward and backward, and every pool on tiny operands holding inf or
    NaN, in a subprocess that is killed when it runs far longer than such calls take (about a
    second in all): a hang (LAPACK's SVD on an inf kernel never returned) fails, not stalls."""
    script = HANG_SCRIPT.format(algorithms=ALGORITHMS)
    try:
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                             cwd=pathlib.Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired as e:
        last = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"hung after 120 s; last case started: {last.strip().splitlines()[-1:]}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith("done")

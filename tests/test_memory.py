"""Peak memory of every convolution algorithm: a pass holds at most the workspace limit
(``convlab.set_workspace_limit``) besides its result, plus the fixed terms named below.

Measured with tracemalloc, which sees NumPy's buffers: the peak of everything allocated
during one public call (``conv2d`` or ``conv2d_backward`` for one gradient), the operands
made before it not counted, after a first call that makes what is made once (imports,
plans and caches keyed by the shapes). The shapes are chosen so that the unchunked form of each
algorithm's workspace (im2col's patch matrix, the FFT's spectra, the separable passes'
intermediates, Winograd's transformed tiles) is several times the limit, and the smallest
chunk of each fits in it. The bound of a pass is::

    LIMIT + result + fixed terms + SMALL

with ``SMALL`` for Python objects, plans, index arrays, weight-sized copies (tap
weights, the kernel matrix, transformed kernels) and NumPy's ufunc buffers (up to
``np.getbufsize()`` elements per operand), and the fixed terms (docs/algorithms.md):

- direct and im2col: one block of the stride-phase grid, ``(S*C + K) * width`` elements:
  the block's padded input on its ``S`` phases and its output (or output gradient) on the
  grid, ``width`` columns (``samples`` samples of ``prod(grid)`` cells, samples flattened
  together only while a plane has under ``phases.MIN_COLUMNS`` cells);
- a finiteness check of an operand (``all_finite``: the FFT's weight gradient, Winograd's
  ``prepare``): a bool mask, one byte per element of that operand;
- fft, separable, winograd: none beyond the limit on these shapes (a chunk is one sample
  and one channel at least; where that alone exceeds the limit, it is the floor).
"""
import math
import tracemalloc

import numpy as np
import pytest
from oracles import args_of, naive_all, operands

import convlab
from convlab.reference import phases

MiB = 2**20
LIMIT = MiB
# Python objects, plans, index arrays and weight-sized copies (64 KiB), and NumPy's ufunc
# buffers: an in-place add on a strided view (im2col's col2im) buffers up to
# np.getbufsize() elements of each of its operands.
SMALL = 64 * 1024 + 3 * np.getbufsize() * 8

SHAPE = ((8, 4, 64, 64), (8, 4, 5, 5), dict(padding=2))      # x and the result: 1 and 2 MiB
SHAPE_3X3 = ((8, 4, 64, 64), (8, 4, 3, 3), dict(padding=1))  # for Winograd
# Small strided planes: 16 samples a block on the phase grid, im2col gathering the outputs' columns.
SHAPE_SMALL = ((64, 16, 14, 14), (128, 16, 3, 3), dict(stride=2, padding=1))
CASES = {"direct": SHAPE, "im2col": SHAPE, "fft": SHAPE, "separable": SHAPE, "winograd": SHAPE_3X3,
         "direct-blocks": SHAPE_SMALL, "im2col-blocks": SHAPE_SMALL}


def peak(run):
    """``(peak bytes allocated while run() ran, its result)``, after one call that is not
    measured: imports and what is made once per shapes (plans, caches) are no workspace."""
    run()
    tracemalloc.start()
    try:
        result = run()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def unchunked(algorithm, args, itemsize):
    """Bytes of the algorithm's largest workspace if made whole (what the chunks replace)."""
    g = args.geom
    n, c, k = args.batch, args.in_channels, args.out_channels
    cells, taps = math.prod(g.padded_size), math.prod(g.kernel)
    grid = phases.plan(args).layout
    return {"direct": n * (grid.phases * c + k) * grid.plane,   # padded input and output on the phase grid
            "im2col": n * c * taps * math.prod(g.out_size),     # the patch matrix
            "fft": (n * c + k * c + n * k) * cells,             # input, kernel and product spectra
            "separable": n * k * c * cells,                     # one pass's intermediate
            "winograd": 36 * (n * c + n * k) * cells // 16,     # transformed tiles and products (F(4x4, 3x3))
            }[algorithm] * itemsize


def fixed_terms(algorithm, args, itemsize, which, operand_elements):
    """The named fixed terms of the module docstring, in bytes."""
    if algorithm in ("direct", "im2col"):
        p = phases.plan(args)
        return (p.layout.phases * args.in_channels + args.out_channels) * p.width * itemsize
    if (algorithm, which) in (("fft", "grad_weight"), ("winograd", "forward"), ("winograd", "grad_input"),
                              ("winograd", "grad_weight")):
        return operand_elements  # the finiteness check's bool mask
    return 0


def passes(x, w, gy, algorithm, params):
    return {"forward": lambda: convlab.conv2d(x, w, algorithm=algorithm, **params),
            "grad_input": lambda: convlab.conv2d_backward(gy, x, w, algorithm=algorithm, needs=(True, False, False),
                                                          **params)[0],
            "grad_weight": lambda: convlab.conv2d_backward(gy, x, w, algorithm=algorithm, needs=(False, True, False),
                                                           **params)[1]}


@pytest.fixture
def small_limit():
    old = convlab.set_workspace_limit(LIMIT)
    try:
        yield LIMIT
    finally:
        convlab.set_workspace_limit(old)


@pytest.mark.parametrize("which", ["forward", "grad_input", "grad_weight"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_peak_memory_is_the_limit_plus_the_result(case, which, small_limit):
    x_shape, w_shape, params = CASES[case]
    algorithm = case.split("-")[0]
    x, w = operands(x_shape, w_shape, rank_one=algorithm == "separable")
    args = args_of(x, w, params)
    gy = np.random.default_rng(1).standard_normal((args.batch, args.out_channels) + args.geom.out_size)
    assert unchunked(algorithm, args, x.itemsize) >= 2 * LIMIT  # the chunks matter on this shape
    mem, result = peak(passes(x, w, gy, algorithm, params)[which])
    operand = x if which != "grad_input" else gy
    bound = LIMIT + result.nbytes + fixed_terms(algorithm, args, x.itemsize, which, operand.size) + SMALL
    assert mem <= bound, (f"{algorithm} {which}: peak {mem / MiB:.2f} MiB > bound {bound / MiB:.2f} MiB "
                          f"(limit {LIMIT / MiB:.2f}, result {result.nbytes / MiB:.2f})")
    # the values: the direct algorithm, itself checked against the loop oracle elsewhere
    want = passes(x, w, gy, "direct", params)[which]()
    np.testing.assert_allclose(result, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())


def test_naive_holds_only_its_result():
    """The loop oracle accumulates into its result and allocates nothing else of size."""
    x, w = operands((1, 2, 12, 12), (3, 2, 3, 3))
    params = dict(padding=1)
    gy = np.random.default_rng(1).standard_normal((1, 3, 12, 12))
    for which, run in passes(x, w, gy, "naive", params).items():
        mem, result = peak(run)
        assert mem <= result.nbytes + SMALL, (which, mem, result.nbytes)
    ref = naive_all(x, w, gy, params)
    np.testing.assert_allclose(convlab.conv2d(x, w, algorithm="naive", **params), ref[0])


def test_the_measure_sees_an_unchunked_workspace(small_limit):
    """Positive controls: the same measure and bound catch a pass that makes its workspace
    whole, the patch matrix of the im2col case (25 MiB) and the spectra of the FFT case
    (the input's alone, 1.3 MiB, plus the kernel's and the product's)."""
    import scipy.fft

    x_shape, w_shape, params = SHAPE
    x, w = operands(x_shape, w_shape)
    args = args_of(x, w, params)
    bound = LIMIT + x.nbytes * args.out_channels // args.in_channels + SMALL  # the forward's result
    bound += fixed_terms("im2col", args, x.itemsize, "forward", x.size)
    mem, patch = peak(lambda: convlab.im2col(x, w_shape[2:], padding=2))
    assert patch.nbytes == unchunked("im2col", args, x.itemsize) and mem > bound, (mem, bound)

    def whole_fft():
        size = (70, 70)
        xs = scipy.fft.rfftn(np.pad(x, ((0, 0), (0, 0), (2, 4), (2, 4))), s=size)
        ws = scipy.fft.rfftn(w, s=size)
        z = np.einsum("ncij,kcij->nkij", xs, ws.conj())
        return scipy.fft.irfftn(z, s=size)[..., :64, :64]

    mem, y = peak(whole_fft)
    np.testing.assert_allclose(y, convlab.conv2d(x, w, algorithm="direct", **params), atol=1e-9)
    assert mem > bound, (mem, bound)

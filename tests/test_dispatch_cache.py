"""What depends only on shapes and parameters is made once: the parsed arguments, the phase
plans, the cost model's ranking. A remembered result must never let bad arguments through:
values equal under ``==`` but of another type (``True == 1``, ``1.0 == 1``) are parsed again."""
import math

import numpy as np
import pytest

import convlab
from convlab import _params as P
from convlab import conv as conv_module
from convlab.reference import im2col, naive, phases


def test_parsed_arguments_are_remembered_by_value():
    x, w = np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 3, 3))
    first = P.conv_args(x, w, None, 1, ((1, 0), (0, 1)), 1, 1, 2)
    assert P.conv_args(np.ones((2, 3, 8, 8)), w, None, 1, ((1, 0), (0, 1)), 1, 1, 2) is first
    assert P.conv_args(x, w, None, 2, ((1, 0), (0, 1)), 1, 1, 2) is not first
    # lists and NumPy integers are parsed every time, to an equal result
    assert P.conv_args(x, w, None, [1, 1], [(1, 0), (0, 1)], np.int64(1), 1, 2) == first
    pool = P.pool_args(x, 3, 2, 1, 1, True, 2)
    assert P.pool_args(x, 3, 2, 1, 1, True, 2) is pool


@pytest.mark.parametrize("good,bad,error", [
    (dict(stride=1), dict(stride=1.0), TypeError), (dict(stride=1), dict(stride=True), TypeError),
    (dict(stride=(1, 2)), dict(stride=(1, 2.0)), TypeError), (dict(padding=(1, 1)), dict(padding=(True, 1)), TypeError),
    (dict(groups=1), dict(groups=True), TypeError), (dict(padding=1), dict(padding=-1), ValueError),
])
def test_a_remembered_call_does_not_let_bad_arguments_through(good, bad, error):
    x, w = np.zeros((1, 2, 6, 6)), np.zeros((2, 2, 3, 3))
    for _ in range(2):
        convlab.conv2d(x, w, **good)
        with pytest.raises(error):
            convlab.conv2d(x, w, **bad)


def test_pool_flags_are_not_taken_for_equal_ints():
    x = np.zeros((1, 1, 6, 6))
    convlab.max_pool2d(x, 2, ceil_mode=True)
    with pytest.raises(TypeError, match="ceil_mode"):
        convlab.max_pool2d(x, 2, ceil_mode=1)
    convlab.max_pool2d(x, 2, ceil_mode=False)
    with pytest.raises(TypeError, match="ceil_mode"):
        convlab.max_pool2d(x, 2, ceil_mode=0)


def test_plans_follow_the_workspace_limit():
    x, w = np.zeros((2, 8, 30, 30)), np.zeros((16, 8, 3, 3))
    args = P.conv_args(x, w, None, 1, 1, 1, 1, 2)
    assert phases.plan(args, 64) is phases.plan(args, 64)
    old = convlab.set_workspace_limit(1024)
    try:
        small = phases.plan(args, 64)
        assert small.step == 1024 // 64 and small is not phases.plan(args, 65)
    finally:
        convlab.set_workspace_limit(old)
    assert phases.plan(args, 64).step > small.step


def test_shared_exact_column_index_is_read_only():
    x, w = np.zeros((8, 4, 7, 7)), np.zeros((64, 4, 3, 3))
    args = P.conv_args(x, w, None, 1, 1, 1, 1, 2)
    idx = im2col.column_plan(args, 8)[1]
    assert idx is not None and not idx.flags.writeable


def test_auto_runs_the_choice_that_choose_algorithm_explains():
    x, w = np.zeros((1, 4, 16, 16)), np.zeros((4, 4, 5, 5))
    args = P.conv_args(x, w, None, 1, 2, 1, 1, 2)
    choice = conv_module._choose(args, x, w)
    assert conv_module._prepare("auto", args, x, w).name == choice.algorithm
    assert choice.reason.startswith("predicted " + choice.algorithm)


def test_shape_objects_hash_once_and_pickle_without_their_hash():
    import pickle

    x, w = np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 3, 3))
    args = P.conv_args(x, w, None, 2, 1, 1, 1, 2)
    again = P.conv_shape_args.__wrapped__((2, 3, 8, 8), (4, 3, 3, 3), 2, 1, 1, 1, 2, x.dtype)
    assert again is not args and again == args and hash(again) == hash(args)
    state = pickle.dumps(args)
    assert b"_hash" not in state  # another process hashes strings differently
    back = pickle.loads(state)
    assert back == args and {args: 1}[back] == 1
    assert hash(P.conv_args(x, w, None, 1, 1, 1, 1, 2)) != hash(args)


def test_plain_preparations_are_made_once_per_shapes_and_dtype():
    from convlab.reference import direct

    x, w = np.zeros((1, 2, 6, 6)), np.zeros((2, 2, 3, 3))
    args = P.conv_args(x, w, None, 1, 1, 1, 1, 2)
    first = direct.prepare(x, w, args)
    assert direct.prepare(np.ones_like(x), w, args) is first
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    args32 = P.conv_args(x32, w32, None, 1, 1, 1, 1, 2)
    assert direct.prepare(x32, w32, args32).dtype == np.float32 and first.dtype == np.float64


def test_numpy_operands_never_prepare_the_device_only_algorithm(monkeypatch):
    def refuse(x, w, args):
        raise AssertionError("prepared the CUDA algorithm for NumPy arrays")

    monkeypatch.setitem(conv_module.ALGORITHMS, "cuda", type("Device", (), dict(
        DEVICE="gpu", supports=staticmethod(lambda args: None), prepare=staticmethod(refuse))))
    x, w = np.random.default_rng(0).standard_normal((1, 2, 5, 5)), np.ones((2, 2, 3, 3))
    conv_module._ranked_with.cache_clear()
    try:
        y = convlab.conv2d(x, w, padding=1)
        with pytest.raises(AssertionError):  # shapes alone: it is a candidate, and asked
            convlab.choose_algorithm(x.shape, w.shape, padding=1, dtype="float64")
    finally:
        conv_module._ranked_with.cache_clear()
    np.testing.assert_allclose(y, convlab.conv2d(x, w, padding=1, algorithm="naive"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape,w_shape,params,nonfinite", [
    ((1, 2, 5, 5), (2, 2, 3, 3), dict(padding=1), None),
    ((2, 4, 7), (6, 2, 3), dict(stride=2, padding=((1, 2),), groups=2), "x"),
    ((1, 2, 6, 5), (3, 2, 2, 3), dict(stride=(1, 2), dilation=2, padding=((2, 0), (1, 1))), "w"),
    ((1, 1, 4, 3, 5), (2, 1, 2, 2, 3), dict(stride=(2, 1, 1), padding=1), None),
    ((3, 2, 4, 4), (4, 1, 3, 1), dict(groups=2, dilation=(1, 3), padding=(1, 3)), "x"),
])
def test_small_patches_run_as_one_copy_and_one_product(x_shape, w_shape, params, nonfinite):
    """Direct and im2col hand a small patch to :mod:`convlab.reference.small` (the fewest
    library calls); it, and their own chunked passes, agree with the loop oracle, NaN and
    infinity included (they reach exactly the sums whose windows read them)."""
    from convlab.reference import direct, small

    rng = np.random.default_rng(2)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    if nonfinite == "x":
        x.flat[5] = np.inf
    if nonfinite == "w":
        w.flat[3] = np.nan
    nd = len(x_shape) - 2
    args = P.conv_args(x, w, None, params.get("stride", 1), params.get("padding", 0), params.get("dilation", 1),
                       params.get("groups", 1), nd)
    gy = rng.standard_normal((x_shape[0], w_shape[0]) + args.geom.out_size)
    assert small.serves(args)
    for module in (direct, im2col):
        assert module.prepare(x, w, args).run is small
    want = (naive.forward(x, w, args), naive.grad_input(gy, w, args), naive.grad_weight(gy, x, args))
    for module in (small, direct, im2col):  # the module functions: the chunked passes too
        got = (module.forward(x, w, args), module.grad_input(gy, w, args), module.grad_weight(gy, x, args))
        for a, b in zip(got, want):
            assert a.shape == b.shape and a.flags.c_contiguous
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # col2im in one np.add.at and as one add per tap (the path of other array modules): the same sums
    d = rng.standard_normal((x_shape[0], args.groups, small.rows(args), math.prod(args.geom.out_size)))
    np.testing.assert_array_equal(small.col2im(d, args), small.col2im_taps(d, args))
    ops = {1: convlab.conv1d, 3: convlab.conv3d}.get(nd, convlab.conv2d)
    np.testing.assert_allclose(ops(x.astype(np.float32), w.astype(np.float32), **params), want[0], rtol=1e-4,
                               atol=1e-4)
    big = P.conv_args(np.zeros((8, 16, 16, 16)), np.zeros((16, 16, 3, 3)), None, 1, 1, 1, 1, 2)
    assert not small.serves(big) and direct.prepare(None, None, big).run is direct

"""What depends only on shapes and parameters is made once: the parsed arguments, the phase
plans, the cost model's ranking. A remembered result must never let bad arguments through:
values equal under ``==`` but of another type (``True == 1``, ``1.0 == 1``) are parsed again."""
import numpy as np
import pytest

import convlab
from convlab import _params as P
from convlab import conv as conv_module
from convlab.reference import im2col, phases


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

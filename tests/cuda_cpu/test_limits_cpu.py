"""Size limits of the kernels, checked on the CPU runtime in dry runs (launches are checked
against CUDA's limits and logged, not executed), so shapes of billions of elements need no
memory: every tensor under 2**31 elements must plan and launch; only what the kernels really
index is limited."""
import numpy as np
import pytest
from cuda_cpu_harness import SPLIT

from convlab._params import conv_shape_args, make_geometry
from convlab.cuda._launch import window_shape
from convlab.cuda.conv import _shape as conv_shape


@pytest.fixture
def dry(cuda_cpu):
    cuda_cpu.log()
    cuda_cpu.dry_run(True)
    yield cuda_cpu
    cuda_cpu.dry_run(False)


def launches(log, name):
    """(grid x, y, z) of each logged launch of kernel ``name``."""
    out = []
    for line in log:
        if line.startswith(name):
            grid = line.split("grid=(")[1].split(")")[0]
            out.append(tuple(int(v) for v in grid.split(",")))
    return out


def conv_dry_run(k, op, dtype, x_shape, w_shape, padding=0):
    args = conv_shape_args(x_shape, w_shape, 1, padding, 1, 1, 2)
    shape = conv_shape(args)
    nbytes = k.C.conv2d_workspace(op, 0, dtype, SPLIT, shape)
    # null-like pointers: a dry run never touches memory
    k.C.conv2d(op, 0, dtype, SPLIT, 0, 8, 8, 8, 8 if nbytes else 0, nbytes, shape)
    return nbytes, k.log()


def test_split_plan_of_a_long_reduction_is_made_in_64_bits(dry):
    """grad_weight of x (511, 1, 2048, 2048), w (1, 1, 3, 3), padding 1: a reduction of
    511*2048*2048 < 2**31 terms, but R + chunk - 1 passes 2**31 while planning."""
    nbytes, log = conv_dry_run(dry, "grad_weight", "float32", (511, 1, 2048, 2048), (1, 1, 3, 3), padding=1)
    (grid,) = launches(log, "gemm_v4")
    splits = grid[2]
    assert 1 < splits <= 256 and grid[:2] == (1, 1)
    assert nbytes == 4 * splits * 1 * 1 * 9  # the workspace [splits][groups][M][N]
    assert len(launches(log, "split_sum_v5")) == 1


def test_tiles_beyond_65535_grid_rows_are_looped_over(dry):
    """grad_input of x (1, 4194305, 1, 1) in float64: ceil(4194305 / 64) = 65537 row tiles, more
    than a grid's y dimension holds."""
    _, log = conv_dry_run(dry, "grad_input", "float64", (1, 4194305, 1, 1), (1, 4194305, 1, 1))
    (grid,) = launches(log, "gemm_v4")
    assert grid[1] == 65535


def test_pooling_is_not_limited_by_the_window_product(dry):
    """3x3/1 max pool with padding 1 on (128, 64, 224, 224) float32: 411M elements in and out; the
    product planes*oh*ow*kh*kw (3.7e9) is indexed by no pooling kernel."""
    geom = make_geometry((224, 224), (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)))
    shape = window_shape(128 * 64, geom)
    dry.C.pool2d_forward("max", 0, "float32", SPLIT, 0, 8, 8, 8, shape)
    dry.C.pool2d_backward("max", 0, "float32", SPLIT, 0, 8, 8, 8, 0, 8, shape)
    log = dry.log()
    assert len(launches(log, "forward_v2")) == 1 and len(launches(log, "backward_v2")) == 1


def test_limits_that_remain(dry):
    """im2col's cols, and any tensor, must stay under 2**31 elements: ValueError before any launch,
    so null pointers are never touched (as tests/gpu checks on a device)."""
    geom = make_geometry((224, 224), (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)))
    with pytest.raises(ValueError, match="cols"):
        dry.C.im2col(0, "float32", SPLIT, 0, 0, 0, window_shape(128 * 64, geom))
    big = make_geometry((46341, 46341), (1, 1), (1, 1), (1, 1), ((0, 0), (0, 0)))
    with pytest.raises(ValueError, match="2\\*\\*31"):
        dry.C.pool2d_forward("avg", 0, "float32", SPLIT, 0, 0, 0, 0, window_shape(1, big))
    out_big = make_geometry((1, 1), (1, 1), (1, 1), (1, 1), ((23171, 23171), (23171, 23171)))  # y: 46343**2
    with pytest.raises(ValueError, match="y has"):
        dry.C.pool2d_forward("avg", 0, "float32", SPLIT, 0, 0, 0, 0, window_shape(1, out_big))
    args = conv_shape_args((1, 2**31 - 5, 1, 1), (1, 2**31 - 5, 1, 1), 1, 0, 1, 1, 2)
    with pytest.raises(ValueError, match="2\\*\\*31"):
        dry.C.conv2d_workspace("grad_weight", 0, "float32", SPLIT, conv_shape(args))
    with pytest.raises(ValueError, match="2\\*\\*31"):
        dry.C.conv2d("grad_weight", 0, "float32", SPLIT, 0, 0, 0, 0, 0, 0, conv_shape(args))
    assert dry.log() == []

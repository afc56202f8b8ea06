"""What every CUDA wrapper does before a launch: check, pick the device and stream, flatten
the geometry to two spatial axes, and pass raw pointers."""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager

from .._backend import kernels, kernels_unavailable
from .._params import Geometry


def require_kernels(x, what: str, nd=None):
    """The extension module for CuPy array ``x``; ValueError saying why ``what`` cannot run otherwise."""
    reason = kernels_unavailable(x, nd)
    if reason is not None:
        raise ValueError(f"{what} cannot run: {reason}")
    return kernels()


def version_arg(version) -> int:
    """The kernels' version argument: 0 (the .cu file's dispatch chooses) for None."""
    if version is None:
        return 0
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be None or an int >= 1, got {version!r}")
    return version


def same_device(first, first_name: str, **others):
    """ValueError naming any operand in ``others`` (None skipped) that is not on ``first``'s
    device: a kernel would read it through a pointer of the wrong device."""
    device = first.device.id
    for name, a in others.items():
        if a is not None and a.device.id != device:
            raise ValueError(f"{name} is on device {a.device.id} but {first_name} is on device {device}; "
                             "move every operand to one device first")


@dataclasses.dataclass(frozen=True)
class Launch:
    xp: object
    device: int
    stream: int


@contextmanager
def on_device(x):
    """Make ``x``'s device current (outputs are allocated there) and give its current stream."""
    import cupy

    with x.device:
        yield Launch(cupy, x.device.id, cupy.cuda.get_current_stream().ptr)


def ptr(a) -> int:
    return 0 if a is None else a.data.ptr


def geometry_2d(geom: Geometry) -> Geometry:
    """A 1-d geometry as 2-d with a unit leading axis (1-d ops run as 2-d ones of height 1)."""
    if geom.nd == 2:
        return geom
    if geom.nd != 1:
        raise ValueError(f"the CUDA kernels take 1 or 2 spatial dims, got {geom.nd}")
    return Geometry((1,) + geom.in_size, (1,) + geom.kernel, (1,) + geom.stride, (1,) + geom.dilation,
                    ((0, 0),) + geom.pad, (1,) + geom.out_size)


def window_shape(planes: int, geom: Geometry) -> tuple:
    """The kernels' window tuple (planes, h, w, kh, kw, oh, ow, sh, sw, ph, ph_hi, pw, pw_hi, dh, dw)."""
    g = geometry_2d(geom)
    return ((planes,) + g.in_size + g.kernel + g.out_size + g.stride + g.pad[0] + g.pad[1] + g.dilation)

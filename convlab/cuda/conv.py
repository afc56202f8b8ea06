"""The ``"cuda"`` convolution algorithm: the kernels of csrc/conv2d.cu for CuPy arrays.

It follows the algorithm protocol (:mod:`convlab._protocol`): :func:`supports`,
:func:`prepare`, and ``forward(x, w, args)``, ``grad_input(gy, w, args)`` and
``grad_weight(gy, x, args)`` (eq. 9.7/9.8 and 9.11-9.13; shapes as in :mod:`convlab.conv`),
plus ``version=`` to pick a kernel version. conv1d runs as conv2d of height 1; the
transposed convolution is ``grad_input``. 3-d convolution has no kernel: :func:`supports`
says so and ``"auto"`` runs the reference on the GPU instead.
"""
from __future__ import annotations

from .._backend import dims_unavailable, kernels_unavailable
from .._protocol import plain
from ._launch import geometry_2d, on_device, ptr, require_kernels, same_device, version_arg

DEVICE = "gpu"  # takes CuPy arrays only


def supports(args):
    return dims_unavailable(args.nd)


def prepare(x, w, args):
    """Ready when ``x`` is a CuPy array on a device the extension was built for."""
    reason = kernels_unavailable(x, args.nd)
    if reason:
        return f"algorithm='cuda' cannot run this convolution: {reason}"
    return plain(__name__, "cuda", x, w, args)


def _shape(args) -> tuple:
    g = geometry_2d(args.geom)
    return ((args.batch, args.in_channels) + g.in_size + (args.out_channels,) + g.kernel + g.out_size + g.stride
            + (g.pad[0][0], g.pad[1][0]) + g.dilation + (args.groups,))


# What in0 and in1 of each op are, for error messages.
_OPERANDS = {"forward": ("x", "w"), "grad_input": ("grad_y", "w"), "grad_weight": ("grad_y", "x")}


def _run(op, out_shape, in0, in1, args, version):
    module = require_kernels(in0, "algorithm='cuda'", args.nd)
    first, second = _OPERANDS[op]
    same_device(in0, first, **{second: in1})
    with on_device(in0) as at:
        xp = at.xp
        if 0 in out_shape or in0.size == 0 or in1.size == 0:
            return xp.zeros(out_shape, dtype=in0.dtype)
        in0, in1 = xp.ascontiguousarray(in0), xp.ascontiguousarray(in1)
        version = version_arg(version)
        dtype, shape = in0.dtype.name, _shape(args)
        nbytes = module.conv2d_workspace(op, version, dtype, at.device, shape)
        ws = xp.empty(nbytes, dtype=xp.uint8) if nbytes else None
        out = xp.empty(out_shape, dtype=in0.dtype)
        module.conv2d(op, version, dtype, at.device, at.stream, out.data.ptr, in0.data.ptr, in1.data.ptr,
                      ptr(ws), nbytes, shape)
    return out


def forward(x, w, args, version=None):
    """``y (N, K, *out)`` from ``x (N, C, *n)`` and ``w (K, C/groups, *k)``."""
    return _run("forward", (args.batch, args.out_channels) + args.geom.out_size, x, w, args, version)


def grad_input(gy, w, args, version=None):
    """``grad_x (N, C, *n)`` from ``grad_y (N, K, *out)`` and ``w``: a gather, no atomics."""
    return _run("grad_input", (args.batch, args.in_channels) + args.geom.in_size, gy, w, args, version)


def grad_weight(gy, x, args, version=None):
    """``grad_w (K, C/groups, *k)`` from ``grad_y (N, K, *out)`` and ``x (N, C, *n)``."""
    shape = (args.out_channels, args.in_channels // args.groups) + args.geom.kernel
    return _run("grad_weight", shape, gy, x, args, version)

"""Thin wrappers around the CUDA kernels of ``convlab._C`` (csrc/*.cu).

Each wrapper checks that the kernels can take its CuPy arrays (ValueError saying why not),
makes them contiguous on their device, allocates the CuPy outputs there, and launches on the
current CuPy stream. ``version=`` selects a kernel version (default: the choice of the .cu file's dispatch);
every .cu file lists its versions in its header and docs/cuda.md describes them.

- :mod:`.conv`: the ``"cuda"`` convolution algorithm (conv1d/conv2d, conv_transpose through
  the backward-data kernel).
- :mod:`.pool`: max, average and L^p pooling, 1-D and 2-D, forward and backward.
- :mod:`.matrix`: im2col and col2im, 1-D and 2-D.
"""

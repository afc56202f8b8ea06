"""convlab: the operations of the "Convolutional Networks" chapter, forward and backward.

Channels-first layout: input ``(N, C, *spatial)``, weight ``(K, C/groups, *kernel)``, 1 to 3
spatial dims. NumPy arrays run on the CPU; CuPy arrays stay on the GPU.
"""
from ._backend import backend_info, set_workspace_limit, workspace_limit
from .conv import (Choice, choose_algorithm, conv1d, conv1d_backward, conv2d, conv2d_backward, conv3d,
                   conv3d_backward, conv_transpose1d, conv_transpose1d_backward, conv_transpose2d,
                   conv_transpose2d_backward, conv_transpose3d, conv_transpose3d_backward)
from .gradcheck import GradcheckError, GradcheckReport, gradcheck
from .matrix import col2im, conv_matrix, im2col
from .separable import (separable_conv1d, separable_conv1d_backward, separable_conv2d, separable_conv2d_backward,
                        separable_conv3d, separable_conv3d_backward)

__version__ = "0.1.0"

__all__ = [
    "backend_info", "set_workspace_limit", "workspace_limit",
    "conv1d", "conv2d", "conv3d", "conv1d_backward", "conv2d_backward", "conv3d_backward",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "conv_transpose1d_backward", "conv_transpose2d_backward", "conv_transpose3d_backward",
    "separable_conv1d", "separable_conv2d", "separable_conv3d",
    "separable_conv1d_backward", "separable_conv2d_backward", "separable_conv3d_backward",
    "choose_algorithm", "Choice", "im2col", "col2im", "conv_matrix",
    "gradcheck", "GradcheckError", "GradcheckReport",
]

"""convlab: the operations of the "Convolutional Networks" chapter, forward and backward.

Channels-first layout: input ``(N, C, *spatial)``, weight ``(K, C/groups, *kernel)``, 1 to 3
spatial dims. NumPy arrays run on the CPU; CuPy arrays stay on the GPU.
"""
from ._backend import backend_info, set_workspace_limit, workspace_limit
from .conv import (Choice, choose_algorithm, conv1d, conv1d_backward, conv2d, conv2d_backward, conv3d,
                   conv3d_backward, conv_transpose1d, conv_transpose1d_backward, conv_transpose2d,
                   conv_transpose2d_backward, conv_transpose3d, conv_transpose3d_backward)
from .gradcheck import GradcheckError, GradcheckReport, gradcheck
from .local import (local_conv1d, local_conv1d_backward, local_conv2d, local_conv2d_backward, local_conv3d,
                    local_conv3d_backward, tiled_conv1d, tiled_conv1d_backward, tiled_conv2d,
                    tiled_conv2d_backward, tiled_conv3d, tiled_conv3d_backward)
from .matrix import col2im, conv_matrix, im2col
from .pool import (adaptive_avg_pool1d, adaptive_avg_pool1d_backward, adaptive_avg_pool2d,
                   adaptive_avg_pool2d_backward, adaptive_avg_pool3d, adaptive_avg_pool3d_backward,
                   adaptive_max_pool1d, adaptive_max_pool1d_backward, adaptive_max_pool2d,
                   adaptive_max_pool2d_backward, adaptive_max_pool3d, adaptive_max_pool3d_backward, avg_pool1d,
                   avg_pool1d_backward, avg_pool2d, avg_pool2d_backward, avg_pool3d, avg_pool3d_backward,
                   lp_pool1d, lp_pool1d_backward, lp_pool2d, lp_pool2d_backward, lp_pool3d, lp_pool3d_backward,
                   max_pool1d, max_pool1d_backward, max_pool2d, max_pool2d_backward, max_pool3d,
                   max_pool3d_backward, maxout, maxout_backward)
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
    "local_conv1d", "local_conv2d", "local_conv3d",
    "local_conv1d_backward", "local_conv2d_backward", "local_conv3d_backward",
    "tiled_conv1d", "tiled_conv2d", "tiled_conv3d",
    "tiled_conv1d_backward", "tiled_conv2d_backward", "tiled_conv3d_backward",
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_backward", "max_pool2d_backward", "max_pool3d_backward",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "avg_pool1d_backward", "avg_pool2d_backward", "avg_pool3d_backward",
    "lp_pool1d", "lp_pool2d", "lp_pool3d", "lp_pool1d_backward", "lp_pool2d_backward", "lp_pool3d_backward",
    "maxout", "maxout_backward",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "adaptive_max_pool1d_backward", "adaptive_max_pool2d_backward", "adaptive_max_pool3d_backward",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_avg_pool1d_backward", "adaptive_avg_pool2d_backward", "adaptive_avg_pool3d_backward",
    "gradcheck", "GradcheckError", "GradcheckReport",
]

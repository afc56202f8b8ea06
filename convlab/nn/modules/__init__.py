"""PyTorch-shaped layers on the engine."""
from .conv import (Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, Linear, LocalConv2d,
                   TiledConv2d)
from .layers import (ELU, SELU, AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d, AdaptiveMaxPool1d,
                     AdaptiveMaxPool2d, AdaptiveMaxPool3d, AlphaDropout, AvgPool1d, AvgPool2d, AvgPool3d, BatchNorm1d,
                     BatchNorm2d, BatchNorm3d, CrossEntropyLoss, Dropout, Flatten, Identity, LogSoftmax, LPPool1d,
                     LPPool2d, LPPool3d, Maxout, MaxPool1d, MaxPool2d, MaxPool3d, MSELoss, ReLU, Sigmoid, Softmax,
                     Tanh)
from .module import Module, ModuleList, Parameter, Sequential, load, save
from .rnn import GRUCell, LSTMCell

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "save", "load", "Linear", "Conv1d", "Conv2d", "Conv3d",
           "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "LocalConv2d", "TiledConv2d", "Identity", "ReLU",
           "ELU", "SELU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax", "Flatten", "MaxPool1d", "MaxPool2d",
           "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "LPPool1d", "LPPool2d", "LPPool3d",
           "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
           "AdaptiveMaxPool3d", "Maxout", "Dropout", "AlphaDropout", "CrossEntropyLoss", "MSELoss", "BatchNorm1d",
           "BatchNorm2d", "BatchNorm3d", "GRUCell", "LSTMCell"]

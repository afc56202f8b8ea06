"""Optimisers with PyTorch's update rules: :class:`SGD` and :class:`Adam`, and their
learning-rate schedules in :mod:`convlab.optim.lr_scheduler`."""
from .optimizer import SGD, Adam, Optimizer
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "lr_scheduler"]

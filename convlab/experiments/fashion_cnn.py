"""A small CNN on Fashion-MNIST (digits when Fashion-MNIST is not installed), trained with
convlab.nn: test accuracy, time per epoch, and the learning curve."""
from __future__ import annotations

import time

import numpy as np

from .. import data, nn, optim
from ..training import RunLog, evaluate, train_epoch

SUMMARY = "small CNN (conv-BN-ReLU-pool x2, linear) on Fashion-MNIST: test accuracy, time per epoch, curve"


def model(channels=1, classes=10, width=16):
    """conv3x3(width)-BN-ReLU-maxpool2, conv3x3(2*width)-BN-ReLU-maxpool2, global average, linear."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes))


def load(quick):
    return data.fashion_mnist_or_digits(*((1024, 512) if quick else (None, None)))


def run(quick, out, seed):
    nn.manual_seed(seed)
    name, x, y, xt, yt = load(quick)
    epochs, batch, lr = (1, 64, 0.05) if quick else (5, 64, 0.05)
    net = model()
    opt = optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    log = RunLog(f"CNN on {name}", settings=dict(epochs=epochs, batch_size=batch, lr=lr, momentum=0.9,
                                                  weight_decay=5e-4, train_size=len(y), test_size=len(yt)))
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        loss, acc = train_epoch(net, opt, data.batches(x, y, batch_size=batch, seed=seed * 1000 + epoch),
                                desc=f"epoch {epoch}/{epochs}", total=-(-len(y) // batch))
        seconds = time.perf_counter() - t0
        test_loss, test_acc = evaluate(net, xt, yt)
        sched.step()
        log.record(epoch=epoch, train_loss=loss, train_accuracy=acc, test_loss=test_loss, test_accuracy=test_acc,
                   seconds=seconds)
    log.plot(out / "curve.png", keys=["train_loss", "test_loss", "train_accuracy", "test_accuracy"])
    return {"dataset": name, "settings": log.settings, "epochs": log.rows,
            "test_accuracy": log.rows[-1]["test_accuracy"],
            "seconds_per_epoch": float(np.mean([r["seconds"] for r in log.rows])),
            "parameters": sum(p.size for p in net.parameters()), "figures": ["curve.png"]}

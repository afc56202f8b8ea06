"""Training-loop helpers: a progress bar, per-epoch metrics, a JSON run log and its curves.

    log = RunLog("fashion-cnn", settings={"lr": 0.01})
    for epoch in range(3):
        loss, acc = train_epoch(model, opt, batches(x, y, batch_size=64, seed=epoch))
        log.record(epoch=epoch, train_loss=loss, train_accuracy=acc, test_accuracy=accuracy(model, xt, yt))
    log.save("run.json"); log.plot("run.png")
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time

import numpy as np

from .nn import Tensor, no_grad
from .nn import functional as F


def progress(iterable, desc=None, total=None, disable=False):
    """``iterable`` with a progress bar on stderr (tqdm when installed, else a plain counter)."""
    if disable:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Counter(iterable, desc, total)
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


def parallel_map(fn, jobs, workers, desc=None):
    """``[fn(job) for job in jobs]`` in ``workers`` forked processes (one BLAS thread each, so
    that the processes do not oversubscribe the cores), with one progress bar over the jobs.
    ``fn`` and the jobs must pickle; data loaded before the call is inherited by the fork."""
    jobs = list(jobs)
    if workers <= 1:
        return [fn(j) for j in progress(jobs, desc=desc, total=len(jobs))]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers, initializer=_one_blas_thread) as pool:
        return list(progress(pool.imap(fn, jobs), desc=desc, total=len(jobs)))


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:  # pragma: no cover - depends on the machine
        pass


class _Counter:
    def __init__(self, iterable, desc, total):
        self.iterable, self.desc = iterable, desc or ""
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)

    def __iter__(self):
        start, last = time.perf_counter(), 0.0
        for i, item in enumerate(self.iterable, 1):
            yield item
            now = time.perf_counter()
            if now - last > 1.0:
                last = now
                of = f"/{self.total}" if self.total else ""
                print(f"\r{self.desc} {i}{of} ({now - start:.0f} s)", end="", file=sys.stderr, flush=True)
        if last:
            print(file=sys.stderr)


def machine():
    """What the figures were measured on: processor, cores, Python and library versions."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__}


class RunLog:
    """Per-epoch metrics with the run's settings, written as JSON and plotted as curves."""

    def __init__(self, name, settings=None):
        self.name, self.settings = name, dict(settings or {})
        self.rows = []
        self.started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    def record(self, **metrics):
        self.rows.append({k: (float(v) if isinstance(v, (np.floating, np.integer)) else v) for k, v in metrics.items()})
        return self.rows[-1]

    def column(self, key):
        return [r[key] for r in self.rows if key in r]

    def to_dict(self):
        return {"name": self.name, "settings": self.settings, "started": self.started, "machine": machine(),
                "epochs": self.rows}

    def save(self, path):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    def plot(self, path, x="epoch", keys=None):
        """Curves of ``keys`` (default: every numeric metric) against ``x``; losses and accuracies
        on separate axes. Needs matplotlib."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = keys or [k for k in self.rows[0] if k != x and isinstance(self.rows[0][k], (int, float))]
        groups = [[k for k in keys if "loss" in k], [k for k in keys if "loss" not in k]]
        groups = [g for g in groups if g]
        fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.5), squeeze=False)
        for ax, group in zip(axes[0], groups):
            for k in group:
                ax.plot(self.column(x), self.column(k), marker="o", label=k)
            ax.set_xlabel(x)
            ax.legend()
            ax.grid(alpha=0.3)
        fig.suptitle(self.name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def train_epoch(model, optimizer, batches, loss_fn=F.cross_entropy, desc="train", show_progress=True, total=None):
    """One pass over ``batches`` of ``(x, y)`` arrays: forward, loss, backward, step.
    Returns ``(mean loss, accuracy)`` (accuracy by argmax over axis 1)."""
    model.train()
    losses, correct, seen = 0.0, 0, 0
    for x, y in progress(batches, desc=desc, total=total, disable=not show_progress):
        out = model(Tensor(x))
        loss = loss_fn(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses += float(loss.item()) * len(y)
        correct += int((out.data.argmax(axis=1) == y).sum())
        seen += len(y)
    return losses / max(seen, 1), correct / max(seen, 1)


@no_grad()
def evaluate(model, x, y, batch_size=500, loss_fn=F.cross_entropy):
    """``(mean loss, accuracy)`` of ``model`` in eval mode on arrays ``x``, ``y``."""
    was_training = model.training
    model.eval()
    losses, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        out = model(Tensor(xb))
        losses += float(loss_fn(out, yb).item()) * len(yb)
        correct += int((out.data.argmax(axis=1) == yb).sum())
    model.train(was_training)
    return losses / max(len(y), 1), correct / max(len(y), 1)

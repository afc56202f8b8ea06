"""Recurrent residual networks with shared weights (Liao & Poggio 2016) at small scale.

(a) shared against unshared weights for the 1-state ResNet, the 3-state ResNet and the
2-state fully recurrent net; (b) time-specific against shared batch norm; (c) read-out
time at test against the trained one, and training at several read-out times; (d) sharing
across states too. Fashion-MNIST, average-pooled to 14x14 (digits, 8x8, with ``--quick``); the
user's CIFAR-10 when the environment variable ``CONVLAB_CIFAR10`` names its folder.
"""
from __future__ import annotations

import os
import time

import numpy as np

from .. import data, nn, optim
from ..models.recurrent import MultiStateRNN, preset, schedule
from ..nn import functional as F
from ..training import evaluate, parallel_map, progress

TRAIN, TEST, EPOCHS = 3000, 2000, 4   # the full run's subset of Fashion-MNIST and its length

SUMMARY = "recurrent ResNets / multi-state RNNs with shared weights (Liao & Poggio 2016): shared vs unshared"


def _data(quick, seed):
    if quick:
        (x, y), (xt, yt) = data.digits("train", seed=seed), data.digits("test", seed=seed)
        return "digits 8x8 (480 train, 200 test)", x[:480], y[:480], xt[:200], yt[:200]
    rng = np.random.default_rng(seed)
    root = os.environ.get("CONVLAB_CIFAR10")
    if root:  # the user's CIFAR-10 (32x32x3, states 32, 16, 8): the paper's data, far over the 2-core budget
        (x, y), (xt, yt) = data.cifar10(root, "train"), data.cifar10(root, "test")
        pick, test = rng.permutation(len(y))[:TRAIN], rng.permutation(len(yt))[:TEST]
        return f"cifar-10 32x32 ({len(pick)} train, {len(test)} test)", x[pick], y[pick], xt[test], yt[test]
    (x, y), (xt, yt) = data.fashion_mnist("train"), data.fashion_mnist("test")
    # 2x2 average pooling (28x28 -> 14x14) and a subset, to fit the budget of 2 cores
    pool = lambda a: a.reshape(len(a), 1, 14, 2, 14, 2).mean(axis=(3, 5))  # noqa: E731
    pick, test = rng.permutation(len(y))[:TRAIN], rng.permutation(len(yt))[:TEST]
    return (f"fashion-mnist 14x14 ({TRAIN} train, {TEST} test)", pool(x[pick]), y[pick], pool(xt[test]),
            yt[test])


def _standardise(x, xt):
    mean, std = x.mean(axis=(0, 2, 3), keepdims=True), x.std(axis=(0, 2, 3), keepdims=True)
    return (x - mean) / std, (xt - mean) / std


def train(model, x, y, xt, yt, epochs, seed, lr=0.05, batch=64, desc="", quiet=False):
    """SGD with momentum 0.9 and the paper's step schedule scaled to ``epochs`` (lr / 10 at 2/3
    and again at 5/6 of the run). Returns one row of train/test error per epoch."""
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    sched = optim.lr_scheduler.MultiStepLR(opt, [max(1, 2 * epochs // 3), max(1, 5 * epochs // 6)], 0.1)
    rows = []
    for epoch in range(epochs):
        model.train()
        losses, wrong, seen = 0.0, 0, 0
        for xb, yb in progress(data.batches(x, y, batch_size=batch, seed=seed * 1000 + epoch),
                               desc=f"{desc} epoch {epoch + 1}/{epochs}", total=-(-len(y) // batch),
                               disable=quiet):
            out = model(nn.Tensor(xb))
            loss = F.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses += loss.item() * len(yb)
            wrong += int((out.data.argmax(1) != yb).sum())
            seen += len(yb)
        sched.step()
        test_loss, test_acc = evaluate(model, xt, yt)
        rows.append(dict(epoch=epoch + 1, train_loss=losses / seen, train_error=wrong / seen,
                         test_error=1 - test_acc))
    return rows


def _params(model):
    return int(sum(p.size for p in model.parameters()))


_DATA = {}  # the standardised data of the current run, set before the workers fork


def _job(spec):
    """Train one net: ``spec = (label, seed, preset or channels/edges/readout, keyword arguments)``.
    Returns the label, seed, per-epoch rows, parameter count and the net itself."""
    label, s, what, kwargs = spec
    x, y, xt, yt = (_DATA[k] for k in ("x", "y", "xt", "yt"))
    nn.manual_seed(s)
    if isinstance(what, str):
        model = preset(what, x.shape[1], 10, x.shape[-1], width=_DATA["width"], **kwargs)
    else:
        model = MultiStateRNN(x.shape[1], 10, x.shape[-1], *what, **kwargs)
    rows = train(model, x, y, xt, yt, _DATA["epochs"], s, quiet=_DATA["workers"] > 1, desc=f"{label} seed {s}")
    return label, s, rows, _params(model), model


def run(quick, out, seed):
    name, x, y, xt, yt = _data(quick, seed)
    x, xt = _standardise(x, xt)
    width, epochs, seeds = (4, 1, [seed]) if quick else (8, EPOCHS, [seed, seed + 1, seed + 2])
    workers = 1 if quick else min(2, os.cpu_count() or 1)
    _DATA.update(x=x, y=y, xt=xt, yt=yt, width=width, epochs=epochs, workers=workers)
    settings = dict(data=name, width=width, epochs=epochs, seeds=seeds, batch=64, lr=0.05, momentum=0.9,
                    weight_decay=1e-4, schedule="lr/10 at 2/3 and 5/6 of the epochs", image_size=x.shape[-1],
                    workers=workers)
    t0 = time.perf_counter()
    # Every net is independent: (a) shared against unshared with time-specific BN, (b) shared
    # BN (its time-specific counterpart is (a)'s shared net), (c) nets trained at read-out 2
    # and 6 (the default 4 is (a)'s), (d) sharing across states, on 3 states of one width.
    jobs = [(f"{p} {'shared' if sh else 'unshared'}", s, p, dict(shared=sh))
            for p in ("resnet3", "frnn2", "resnet1") for sh in (True, False) for s in seeds]
    jobs += [(f"{p} bn=shared", s, p, dict(shared=True, bn="shared")) for p in ("frnn2", "resnet1") for s in seeds]
    jobs += [(f"{p} train T={T}", seed, p, dict(shared=True, readout=T)) for p in ("frnn2", "resnet1") for T in (2, 6)]
    three = ((2 * width,) * 3, [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2)], 6)
    jobs += [(f"share_states={ss}", seed, three, dict(shared=True, share_states=ss)) for ss in (False, True)]
    done = {(label, s): (rows, n, model) for label, s, rows, n, model in
            parallel_map(_job, jobs, workers, desc="recurrent nets")}
    _DATA.clear()

    def final(label):
        return [done[(label, s)][0][-1]["test_error"] for s in seeds]

    def spread(label):
        errors = final(label)
        train_errors = [done[(label, s)][0][-1]["train_error"] for s in seeds]
        return dict(test_error_mean=float(np.mean(errors)), test_error_std=float(np.std(errors)),
                    test_errors=errors, train_error_mean=float(np.mean(train_errors)))

    results = {"settings": settings, "comparison": {}, "parameters": {}, "schedules": {}, "curves": {}}
    for p in ("resnet1", "resnet3", "frnn2"):
        for kind in ("shared", "unshared"):
            key = f"{p} {kind}"
            rows, n, model = done[(key, seed)]
            results["parameters"][key] = n
            results["comparison"][key] = dict(spread(key), parameters=n)
            results["curves"][key] = [done[(key, s)][0] for s in seeds]
        sch = model.sched
        results["schedules"][p] = dict(defined_at=sch.defined_at, readout=sch.readout,
                                       edges=[list(e) for e in model.edges])
    results["batch_norm"] = {}
    for p in ("resnet1", "frnn2"):
        results["batch_norm"][f"{p} bn=time"] = spread(f"{p} shared")
        results["batch_norm"][f"{p} bn=shared"] = spread(f"{p} bn=shared")
        # is a failure one of training, or of the running statistics (one set for all steps)?
        results["batch_norm"][f"{p} bn=shared"]["test_error_with_batch_statistics"] = [
            1 - evaluate_at(done[(f"{p} bn=shared", s)][2], xt, yt, None, batch_statistics=True) for s in seeds]
    results["readout"] = {}
    for p in ("resnet1", "frnn2"):
        model = done[(f"{p} shared", seed)][2]
        errors = {}
        for T in range(1, 9):
            try:
                schedule(len(model.channels), model.edges, T)
            except ValueError:
                continue
            errors[T] = 1 - evaluate_at(model, xt, yt, T)
        trained_at = {T: done[(f"{p} train T={T}", seed)][0][-1]["test_error"] for T in (2, 6)}
        trained_at[model.readout] = final(f"{p} shared")[0]
        results["readout"][p] = dict(test_error_by_test_readout=errors, trained_readout=model.readout,
                                     test_error_by_trained_readout=dict(sorted(trained_at.items())))
    results["share_states"] = {str(ss): dict(test_error=done[(f"share_states={ss}", seed)][0][-1]["test_error"],
                                             parameters=done[(f"share_states={ss}", seed)][1])
                               for ss in (False, True)}
    results["seconds_training"] = time.perf_counter() - t0
    results["figures"] = _figures(results, out)
    return results


def evaluate_at(model, x, y, readout, batch=500, batch_statistics=False):
    """Accuracy of ``model`` read out at step ``readout`` (no graph): eval mode, or with
    ``batch_statistics`` each batch normalised by its own statistics (running ones move)."""
    model.train(batch_statistics)
    with nn.no_grad():
        correct = sum(int((model(nn.Tensor(x[i:i + batch]), readout=readout).data.argmax(1) == y[i:i + batch]).sum())
                      for i in range(0, len(y), batch))
    return correct / len(y)


def _figures(results, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    presets = ("resnet1", "resnet3", "frnn2")
    fig, axes = plt.subplots(1, len(presets), figsize=(4.2 * len(presets), 3.4), squeeze=False)
    for ax, p in zip(axes[0], presets):
        for shared, colour in ((True, "tab:blue"), (False, "tab:green")):
            key = f"{p} {'shared' if shared else 'unshared'}"
            for k, run in enumerate(results["curves"][key]):
                ep = [r["epoch"] for r in run]
                ax.plot(ep, [r["train_error"] for r in run], color=colour, ls="--", alpha=0.6,
                        label=f"{'shared' if shared else 'unshared'} train" if k == 0 else None)
                ax.plot(ep, [r["test_error"] for r in run], color=colour,
                        label=f"{'shared' if shared else 'unshared'} test "
                              f"({results['parameters'][key]} params)" if k == 0 else None)
        ax.set_title(p)
        ax.set_xlabel("epoch")
        ax.set_ylabel("error")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "shared_vs_unshared.png", dpi=100)
    plt.close(fig)
    names.append("shared_vs_unshared.png")

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for p, r in results["readout"].items():
        by_t = {int(t): e for t, e in r["test_error_by_test_readout"].items()}  # str keys from JSON
        ts = sorted(by_t)
        ax.plot(ts, [by_t[t] for t in ts], marker="o", label=f"{p} (trained at T=4)")
    ax.axvline(4, color="grey", ls=":")
    ax.set_xlabel("read-out time at test")
    ax.set_ylabel("test error")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "readout.png", dpi=100)
    plt.close(fig)
    names.append("readout.png")

    # the unrolled schedule: a dot where a state is defined, an arrow per transition computed
    colours = {"self": "grey", "up": "tab:blue", "down": "tab:red"}
    fig, axes = plt.subplots(1, len(results["schedules"]), figsize=(4 * len(results["schedules"]), 3), squeeze=False)
    for ax, (p, s) in zip(axes[0], results["schedules"].items()):
        n, T = len(s["defined_at"]), s["readout"]
        edges = [tuple(e) for e in s["edges"]]
        for t, active in enumerate(schedule(n, edges, T).active):
            for i, j in active:
                kind = "self" if i == j else ("up" if i < j else "down")
                ax.annotate("", xy=(t + 1, j), xytext=(t, i),
                            arrowprops=dict(arrowstyle="->", color=colours[kind], lw=1, shrinkA=4, shrinkB=4))
        for j, t0 in enumerate(s["defined_at"]):
            ts = [t for t in range(T + 1) if t0 is not None and t >= t0]
            ax.scatter(ts, [j] * len(ts), color="black", s=25, zorder=3)
        ax.scatter([T], [n - 1], s=160, facecolors="none", edgecolors="tab:green", zorder=4)
        ax.set_yticks(range(n))
        ax.set_yticklabels([f"state {j}" for j in range(n)])
        ax.set_xlabel("time step")
        ax.set_xlim(-0.5, T + 0.5)
        ax.set_ylim(-0.5, n - 0.5)
        ax.set_title(f"{p}: read-out at T={T} (green ring)", fontsize=9)
    handles = [plt.Line2D([], [], color=c, label=k) for k, c in
               (("self", colours["self"]), ("bottom-up", colours["up"]), ("top-down", colours["down"]))]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(out / "schedules.png", dpi=100)
    plt.close(fig)
    names.append("schedules.png")
    return names

"""Section 9.6: a recurrent convolutional network labels every pixel of scenes made of
Fashion-MNIST items; pixel accuracy after each refinement step, and the trained net on a
canvas of another size."""
from __future__ import annotations

import time

import numpy as np

from .. import data, nn, optim
from ..models import segmentation as S
from ..plotting import pyplot, save, show
from ..training import RunLog, progress
from .fashion_cnn import load

SUMMARY = "recurrent conv net (Fig. 9.17) labelling Fashion-MNIST scenes: pixel accuracy per step, other canvas sizes"


def _colours():
    from matplotlib.colors import ListedColormap

    plt = pyplot()
    return ListedColormap([(0, 0, 0)] + [plt.get_cmap("tab10")(i) for i in range(10)])


@nn.no_grad()
def _evaluate(net, x, y, steps, batch_size=50):
    """Per-step scores (:func:`segmentation.scores`) on ``x, y``, and the first batch's labels."""
    net.eval()
    counts = np.zeros((steps, S.CLASSES, S.CLASSES), np.int64)
    first = None
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        labels = [s.data.argmax(axis=1) for s in net(nn.Tensor(xb), steps=steps)]
        counts += np.stack([S.confusion(lab, yb, S.CLASSES) for lab in labels])
        first = labels if first is None else first
    net.train()
    return [S.scores(c) for c in counts], first


def _by_step(per_step, key):
    return [s[key] for s in per_step]


def _figure(path, x, y, labels, rows, title):
    plt = pyplot()
    cmap = _colours()
    cols = 2 + len(labels)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows * x.shape[2] / x.shape[3]), squeeze=False)
    for r in range(rows):
        show(axes[r, 0], x[r, 0], "input" if r == 0 else None)
        show(axes[r, 1], y[r], "truth" if r == 0 else None, cmap=cmap, vmin=0, vmax=10)
        for t, lab in enumerate(labels):
            show(axes[r, 2 + t], lab[r], f"step {t + 1}" if r == 0 else None, cmap=cmap, vmin=0, vmax=10)
    fig.suptitle(title, fontsize=9)
    save(fig, path)


def run(quick, out, seed):
    cpu0 = time.process_time()  # the machine may be shared: CPU time says what the run costs
    name, x, y, xt, yt = load(quick)
    if quick:
        settings = dict(train_scenes=400, test_scenes=100, size=56, epochs=3, big_size=(70, 98), batch_size=16)
    else:
        settings = dict(train_scenes=4000, test_scenes=500, size=56, epochs=2, big_size=(84, 112), batch_size=16)
    if x.shape[-1] < 28:  # digits: smaller items, smaller canvases
        settings.update(size=2 * x.shape[-1], big_size=(3 * x.shape[-1], 4 * x.shape[-1]))
    steps, show_steps, lr = 3, 5, 1e-2
    settings.update(dataset=name, items=(2, 4), big_items=(4, 7), steps=steps, lr=lr, seed=seed)
    X, Y = data.scenes(x, y, settings["train_scenes"], settings["size"], settings["items"], seed=seed)
    XT, YT = data.scenes(xt, yt, settings["test_scenes"], settings["size"], settings["items"], seed=seed + 1)
    XB, YB = data.scenes(xt, yt, settings["test_scenes"] // 2, settings["big_size"], settings["big_items"],
                         seed=seed + 2)
    settings["background_fraction"] = float((YT == 0).mean())

    nn.manual_seed(seed)
    net = S.RecurrentLabeller(steps=steps)
    net.set_prior(np.bincount(Y.ravel(), minlength=S.CLASSES) / Y.size)
    batch = settings["batch_size"]
    per_epoch = -(-len(Y) // batch)
    opt = optim.Adam(net.parameters(), lr=lr)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=settings["epochs"] * per_epoch)  # stepped per batch
    log = RunLog("recurrent labeller", settings)
    for epoch in range(1, settings["epochs"] + 1):
        t0, losses = time.perf_counter(), []
        for xb, yb in progress(data.batches(X, Y, batch_size=batch, seed=seed * 1000 + epoch),
                               desc=f"epoch {epoch}/{settings['epochs']}", total=per_epoch):
            loss = S.loss(net(nn.Tensor(xb)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.item()))
        seconds = time.perf_counter() - t0
        per_step, _ = _evaluate(net, XT, YT, steps)
        log.record(epoch=epoch, train_loss=float(np.mean(losses)), seconds=seconds,
                   **{f"test_mean_iou_step{t + 1}": s["mean_iou"] for t, s in enumerate(per_step)})
    log.plot(out / "curve.png", keys=["train_loss"] + [f"test_mean_iou_step{t + 1}" for t in range(steps)])

    per_step, labels = _evaluate(net, XT, YT, show_steps)
    _figure(out / "scenes.png", XT, YT, labels[:steps], 4,
            "pixel accuracy / mean IoU by step: "
            + ", ".join(f"{s['pixel_accuracy']:.3f} / {s['mean_iou']:.3f}" for s in per_step[:steps]))
    big, big_labels = _evaluate(net, XB, YB, show_steps)
    _figure(out / "other_size.png", XB, YB, big_labels[:steps], 2,
            f"trained on {settings['size']}x{settings['size']}, labelling {XB.shape[2]}x{XB.shape[3]}")
    keys = ("pixel_accuracy", "item_pixel_accuracy", "mean_class_accuracy", "mean_iou")
    return {"settings": settings, "epochs": log.rows,
            **{f"{k}_by_step": _by_step(per_step, k) for k in keys},
            "class_accuracy_by_step": _by_step(per_step, "class_accuracy"),
            "iou_by_step": _by_step(per_step, "iou"),
            "other_size": {"shape": list(XB.shape[2:]), "background_fraction": float((YB == 0).mean()),
                           **{f"{k}_by_step": _by_step(big, k) for k in keys}},
            "parameters": sum(p.size for p in net.parameters()), "cpu_seconds": time.process_time() - cpu0,
            "figures": ["scenes.png", "other_size.png", "curve.png"]}

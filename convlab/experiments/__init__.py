"""Experiments on the engine: ``convlab experiment NAME [--quick] [--out DIR] [--seed S]``.

Each experiment is a module here with ``SUMMARY`` (one line) and
``run(quick: bool, out: pathlib.Path, seed: int) -> dict``; it writes its PNG figures to
``out`` and returns every figure its docs page quotes. :func:`run` adds the settings,
machine, date and duration and writes ``out/results.json``. ``--quick`` is small enough
for CI (under a minute on 2 cores); the full run is the one the docs page records.
"""
from __future__ import annotations

import datetime
import importlib
import json
import time
from pathlib import Path

# name -> module (under convlab.experiments)
EXPERIMENTS = {
    "fashion-cnn": "fashion_cnn",
    "recurrent-resnet": "recurrent_resnet",
    "selu": "selu",
    "rnn-memory": "rnn_memory",
    "gabor": "gabor",
    "features": "features",
    "segmentation": "segmentation",
}


def summaries():
    return {name: importlib.import_module(f"{__name__}.{mod}").SUMMARY for name, mod in EXPERIMENTS.items()}


def _jsonable(value):
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value


def run(name, quick=False, out=None, seed=0):
    """Run experiment ``name``; returns its results (also written to ``out/results.json``)."""
    from ..training import machine

    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; expected one of {sorted(EXPERIMENTS)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    out = Path(out if out is not None else f"results/{name}{'-quick' if quick else ''}")
    out.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(f"{__name__}.{EXPERIMENTS[name]}")
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.perf_counter()
    results = module.run(quick=quick, out=out, seed=seed)
    record = {"experiment": name, "quick": quick, "seed": seed, "date": started.isoformat(timespec="seconds"),
              "seconds": round(time.perf_counter() - t0, 1), "machine": machine(), **results}
    with open(out / "results.json", "w") as f:
        json.dump(_jsonable(record), f, indent=2)
    return record

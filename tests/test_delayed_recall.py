"""convlab.data.delayed_recall: timing constraints, frames, targets and bad input."""
import itertools

import numpy as np
import pytest

from convlab.data import delayed_recall


@pytest.fixture
def images():
    rng = np.random.default_rng(1)
    x = rng.random((40, 1, 3, 4)).astype(np.float32) + 2.0  # far from the noise frames
    y = np.arange(40) % 5
    return x, y


def test_frames_triggers_and_targets(images):
    x, y = images
    b = delayed_recall(x, y, t_max=12, n_classes=3, noise=0.05, seed=3, n=200)
    assert b.inputs.shape == (200, 12, 13) and b.inputs.dtype == np.float32
    assert b.targets.shape == (200, 12) and b.null == 5
    flat = x.reshape(40, 12)
    for i in range(200):
        ts, ta = b.t_s[i] - 1, b.t_a[i] - 1
        frame = b.inputs[i, ts, :12]
        # the stimulus frame is one of the images with this label, bit for bit
        matches = [j for j in range(40) if np.array_equal(flat[j], frame)]
        assert matches and all(y[j] == b.labels[i] for j in matches)
        assert b.labels[i] < 3
        trigger = b.inputs[i, :, 12]
        assert trigger[ta] == 1 and np.count_nonzero(trigger) == 1
        expected = np.full(12, 5)
        expected[ta] = b.labels[i]
        np.testing.assert_array_equal(b.targets[i], expected)
        others = np.delete(b.inputs[i, :, :12], ts, axis=0)
        assert np.abs(others).max() < 1.0  # noise frames, not images


def test_times_uniform_over_valid_pairs(images):
    x, y = images
    t_max, gap, n = 9, 4, 40000
    b = delayed_recall(x, y, t_max=t_max, n_classes=5, min_gap=gap, seed=0, n=n)
    assert b.t_s.min() >= 1 and b.t_a.max() <= t_max and np.all(b.t_a - b.t_s > gap)
    pairs = [(s, a) for s, a in itertools.product(range(1, t_max + 1), repeat=2) if a - s > gap]
    assert len(pairs) == 10  # 4 + 3 + 2 + 1
    counts = np.array([np.sum((b.t_s == s) & (b.t_a == a)) for s, a in pairs])
    assert counts.sum() == n
    # each valid pair has probability 1/10; 5 standard deviations of a binomial count
    expected = n / len(pairs)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_fixed_delay_and_noise_level(images):
    x, y = images
    b = delayed_recall(x, y, t_max=30, n_classes=5, delay=17, noise=0.5, seed=2, n=300)
    np.testing.assert_array_equal(b.t_a - b.t_s, 17)
    assert set(np.unique(b.t_s)) == set(range(1, 14))
    noise = b.inputs[:, :, :12][b.inputs[:, :, 12] == 1]
    assert abs(noise.std() - 0.5) < 0.05 and abs(noise.mean()) < 0.05


def test_same_seed_same_batch(images):
    x, y = images
    a = delayed_recall(x, y, 10, 4, seed=7, n=8)
    b = delayed_recall(x, y, 10, 4, seed=7, n=8)
    c = delayed_recall(x, y, 10, 4, seed=8, n=8)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    assert not np.array_equal(a.inputs, c.inputs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(t_max=5), "t_max=5 is too small for min_gap=4"),
    (dict(t_max=8, min_gap=7), "t_max=8 is too small"),
    (dict(n_classes=6), r"n_classes must lie in \[1, 5\]"),
    (dict(n_classes=0), "n_classes"),
    (dict(delay=4), "delay"),
    (dict(delay=10), "delay"),
    (dict(noise=-1.0), "noise"),
    (dict(n=0), "n must be"),
])
def test_bad_input(images, kwargs, match):
    x, y = images
    args = dict(t_max=10, n_classes=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        delayed_recall(x, y, **args)


def test_mismatched_images_and_labels(images):
    x, y = images
    with pytest.raises(ValueError, match="images must be"):
        delayed_recall(x, y[:-1], 10, 2)

"""Section 9.6: the scenes, the recurrent labeller's shapes on any canvas, its gradient
through the unrolled steps against finite differences, and the quick experiment."""
import numpy as np
import pytest

from convlab import data, experiments, nn
from convlab.models import segmentation as S


def items(n=20, seed=0):
    rng = np.random.default_rng(seed)
    images = (rng.random((n, 1, 8, 8)) > 0.5).astype(np.float32) * rng.uniform(0.5, 1, (n, 1, 1, 1))
    return images.astype(np.float32), rng.integers(10, size=n)


def test_scenes_are_reproducible_and_labelled_by_their_items():
    images, labels = items()
    x, y = data.scenes(images, labels, 6, size=(20, 24), items=(2, 3), seed=3)
    assert x.shape == (6, 1, 20, 24) and y.shape == (6, 20, 24) and x.dtype == np.float32 and y.dtype == np.int64
    x2, y2 = data.scenes(images, labels, 6, size=(20, 24), items=(2, 3), seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(y, data.scenes(images, labels, 6, size=(20, 24), items=(2, 3), seed=4)[1])
    # labelled pixels are bright, background is dark, and every label is an item's class + 1
    assert (x[:, 0][y > 0] > 0.2).all() and (x[:, 0][y == 0] <= 0.2).all()
    assert set(np.unique(y)) - {0} <= set(labels + 1)
    with pytest.raises(ValueError, match="size"):
        data.scenes(images, labels, 1, size=6)
    with pytest.raises(ValueError, match="items"):
        data.scenes(images, labels, 1, items=(0, 2))


@pytest.mark.parametrize("shape", [(12, 12), (17, 30)])
def test_output_plane_equals_input_plane(shape):
    net = S.RecurrentLabeller(width=2, hidden=4, steps=3)
    scores = net(nn.Tensor(np.zeros((2, 1) + shape, np.float32)))
    assert len(scores) == 3 and all(s.shape == (2, 11) + shape for s in scores)
    with pytest.raises(ValueError, match="odd"):
        S.RecurrentLabeller(kernel=4)
    with pytest.raises(ValueError, match="feedback_kernel"):
        S.RecurrentLabeller(feedback_kernel=2)


def test_gradient_through_the_unrolled_steps():
    nn.manual_seed(0)
    net = S.RecurrentLabeller(classes=3, width=2, hidden=3, kernel=3, feedback_kernel=3, steps=3).double()
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 7, 6))
    y = rng.integers(3, size=(2, 7, 6))

    def loss_value():
        with nn.no_grad():
            return float(S.loss(net(nn.Tensor(x)), y).item())

    loss = S.loss(net(nn.Tensor(x)), y)
    net.zero_grad()
    loss.backward()
    # W only acts from step 2 on: its gradient exists only through the recurrence
    for name, p in net.named_parameters():
        flat, grad = p.data.reshape(-1), p.grad.reshape(-1)
        for i in rng.choice(flat.size, size=min(4, flat.size), replace=False):
            keep = flat[i]
            flat[i] = keep + 1e-6
            up = loss_value()
            flat[i] = keep - 1e-6
            down = loss_value()
            flat[i] = keep
            assert grad[i] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-8), name
    assert np.abs(net.W.weight.grad).max() > 0


def test_scores_of_a_confusion_matrix_counted_by_hand():
    target = np.array([[0, 0, 1, 1], [2, 2, 2, 0]])
    labels = np.array([[0, 1, 1, 1], [2, 0, 1, 0]])
    counts = S.confusion(labels, target, 4)
    assert counts.shape == (4, 4) and counts.sum() == 8
    assert counts[0].tolist() == [2, 1, 0, 0] and counts[1].tolist() == [0, 2, 0, 0] and counts[2].tolist() == [1, 1, 1, 0]
    r = S.scores(counts)
    assert r["pixel_accuracy"] == pytest.approx(5 / 8)
    assert r["item_pixel_accuracy"] == pytest.approx(3 / 5)
    # recalls 2/3, 2/2, 1/3; label 3 occurs nowhere and is left out of the means
    assert r["mean_class_accuracy"] == pytest.approx((2 / 3 + 1 + 1 / 3) / 3)
    # IoU: background 2/(3+3-2), label 1 2/(2+4-2), label 2 1/(3+1-1)
    assert r["mean_iou"] == pytest.approx((2 / 4 + 2 / 4 + 1 / 3) / 3)
    with pytest.raises(ValueError, match="shape"):
        S.confusion(labels[:1], target, 4)


def test_prior_starts_from_the_class_frequencies():
    net = S.RecurrentLabeller(classes=3, width=2, hidden=3)
    net.set_prior([0.5, 0.25, 0.25])
    with nn.no_grad():
        net.V.weight.data[...] = 0  # the scores are then c alone
        p = np.exp(net(nn.Tensor(np.zeros((1, 1, 8, 8), np.float32)))[0].data[0, :, 3, 3])
    np.testing.assert_allclose(p / p.sum(), [0.5, 0.25, 0.25], rtol=1e-6)


def test_quick_experiment_accuracy_rises_with_steps(tmp_path):
    record = experiments.run("segmentation", quick=True, out=tmp_path, seed=0)
    acc = record["pixel_accuracy_by_step"]
    assert acc[2] > acc[0]
    assert acc[0] > record["settings"]["background_fraction"] - 0.05
    assert len(record["other_size"]["pixel_accuracy_by_step"]) == len(acc)
    for name in record["figures"]:
        assert (tmp_path / name).stat().st_size > 1000

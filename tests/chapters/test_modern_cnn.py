import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from book.lab.cnn import layer_geometry, shift
from book.lab.modern_cnn import (ShiftExplorer, cascading_randomization, mlp_same_budget, randomized_copy,
                                 randomized_layers, saliency_maps, separable_match, shift_accuracy, smoothgrad,
                                 spearman, train_classifier)
from book.nn.conv import (depthwise_conv2d, pointwise_conv2d, receptive_field, separable_conv2d_flops,
                          separable_conv2d_params)
from book.nn.counting import count_params, measure_flops
from book.nn.models import SmallCNN


def test_pointwise_and_depthwise_match_torch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 7, 5, generator=g, dtype=torch.float64)
    w, b = torch.randn(4, 6, 1, 1, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    assert torch.allclose(pointwise_conv2d(x, w, b), F.conv2d(x, w, b))
    assert torch.allclose(pointwise_conv2d(x, w), F.conv2d(x, w))
    dw, db = torch.randn(6, 1, 3, 3, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    for stride, padding in [(1, 0), (1, 1), (2, 1)]:
        assert torch.allclose(depthwise_conv2d(x, dw, db, stride, padding),
                              F.conv2d(x, dw, db, stride=stride, padding=padding, groups=6))
    assert torch.allclose(depthwise_conv2d(x, dw), F.conv2d(x, dw, groups=6))
    with pytest.raises(ValueError, match="pointwise"):
        pointwise_conv2d(x, torch.zeros(4, 6, 3, 3))
    with pytest.raises(ValueError, match="depthwise"):
        depthwise_conv2d(x, torch.zeros(4, 1, 3, 3))


@pytest.mark.parametrize("c_in,c_out,k,hw", [(32, 64, 3, 14), (3, 5, 5, 9), (1, 1, 1, 4)])
def test_separable_counts_match_modules_and_the_flop_counter(c_in, c_out, k, hw):
    sep = nn.Sequential(nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in), nn.Conv2d(c_in, c_out, 1))
    assert count_params(sep) == separable_conv2d_params(c_in, c_out, k)
    assert separable_conv2d_params(c_in, c_out, k, bias=False) == c_in * k * k + c_in * c_out
    assert measure_flops(sep, torch.zeros(1, c_in, hw, hw)) == separable_conv2d_flops(c_in, c_out, k, hw, hw)


def test_small_cnn_variants_and_errors():
    x = torch.zeros(3, 1, 28, 28)
    for down in ("max", "avg", "stride"):
        for head in ("flatten", "gap"):
            for separable in (False, True):
                assert SmallCNN((4, 8), down=down, head=head, separable=separable)(x).shape == (3, 10)
    assert count_params(SmallCNN()) == 8778
    assert layer_geometry(SmallCNN().features) == [(3, 1, 1), (2, 2, 1)] * 3
    assert receptive_field(layer_geometry(SmallCNN(down="stride").features)) == (15, 8)
    with pytest.raises(ValueError, match="down"):
        SmallCNN(down="min")
    with pytest.raises(ValueError, match="head"):
        SmallCNN(head="mean")
    with pytest.raises(ValueError, match="channels"):
        SmallCNN(channels=())


def test_same_budget_helpers():
    n = count_params(SmallCNN())
    assert abs(count_params(mlp_same_budget(n)) - n) <= (784 + 1 + 10) / 2
    widths = separable_match((8, 16, 32))
    assert widths[0] == 8 and abs(count_params(SmallCNN(widths, separable=True)) - n) < 0.05 * n


def test_spearman_matches_pearson_of_ranks():
    import numpy as np
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(4, 30, generator=g), torch.rand(4, 30, generator=g)
    ours = spearman(a, b)
    for i in range(4):
        ra, rb = np.argsort(np.argsort(a[i].numpy())), np.argsort(np.argsort(b[i].numpy()))
        assert abs(ours[i].item() - np.corrcoef(ra, rb)[0, 1]) < 1e-9
    assert torch.allclose(spearman(a, a ** 3), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(spearman(a, -a), -torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="shapes differ"):
        spearman(a, b[:2])
    # ties share their mean rank, as in scipy.stats.spearmanr: an image that is mostly 0
    x = torch.tensor([[0.0, 0.0, 0.0, 0.5, 1.0, 0.0]])
    m = torch.tensor([[0.1, 0.3, 0.2, 0.6, 0.9, 0.4]])
    rx, rm = np.array([1.5, 1.5, 1.5, 4, 5, 1.5]), np.array([0, 2, 1, 4, 5, 3.0])
    assert abs(spearman(x, m).item() - np.corrcoef(rx, rm)[0, 1]) < 1e-12
    assert abs(spearman(x, x.flip(1)).item() - spearman(x.flip(1), x).item()) < 1e-12
    assert torch.allclose(spearman(x, x), torch.ones(1, dtype=torch.float64))


def test_saliency_tools():
    torch.manual_seed(0)
    net = SmallCNN((4, 8))
    x = torch.rand(5, 1, 28, 28)
    maps = saliency_maps(net, x)
    assert maps.shape == (5, 28, 28) and net.training and (maps >= 0).all()
    one = x[2:3].clone().requires_grad_(True)      # the batched map equals the one-image map
    score = net.eval()(one)[0]
    score[score.argmax()].backward()
    assert torch.allclose(maps[2], one.grad[0].abs().amax(0))
    net.train()
    sg = smoothgrad(net, x, 3, 0.1, generator=torch.Generator().manual_seed(0))
    assert sg.shape == (5, 28, 28) and net.training     # the mode is restored
    assert torch.allclose(smoothgrad(net, x, 1, 0.0), saliency_maps(net, x))
    with pytest.raises(ValueError, match="samples"):
        smoothgrad(net, x, 0, 0.1)
    before = copy.deepcopy(net.state_dict())
    cascade = cascading_randomization(net, x, seed=0)
    assert [name for name, _ in cascade] == randomized_layers(net) == ["classifier.1", "features.6", "features.3",
                                                                       "features.0"][1:] or len(cascade) == 3
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())     # the model is untouched
    assert all(-1 <= r <= 1 for _, r in cascade)
    rand = randomized_copy(net, seed=0)
    assert not torch.equal(rand.classifier[1].weight, net.classifier[1].weight)


def test_train_classifier_shift_accuracy_and_explorer():
    from book import load_mnist
    data = load_mnist(n_train=600, n_val=200)
    run = train_classifier(lambda: SmallCNN((4, 8)), data, epochs=1, lr=3e-3, seed=0)
    again = train_classifier(lambda: SmallCNN((4, 8)), data, epochs=1, lr=3e-3, seed=0, watch="t", log_every=2)
    assert run.dashboard is None and again.dashboard is not None
    assert all(torch.equal(a, b) for a, b in zip(run.model.state_dict().values(),
                                                 again.model.state_dict().values()))   # watching changes nothing
    accs = shift_accuracy(run.model, data.x_val, data.y_val, [0, 2])
    assert accs[0] == pytest.approx(run.history.val_acc[-1]) and len(accs) == 2
    nets = {"a": run.model, "b": again.model}
    curves = {"a": accs, "b": accs}
    view = ShiftExplorer(nets, data.x_val, data.y_val, [0, 2], curves)
    preds = view.draw(shift=2, index=1)
    assert set(preds) == {"a", "b"} and all(0 <= p < 10 for p in preds.values())
    assert "<script" in view.player("shift", [0, 1, 2]).data
    with pytest.raises(ValueError, match="shift must be"):
        view.draw(shift=3)
    with pytest.raises(ValueError, match="name different"):
        ShiftExplorer(nets, data.x_val, data.y_val, [0, 2], {"a": accs})


def test_exact_shifts_really_are_exact():
    """What the exact_shifts exercise derives: a shift by the jump moves SmallCNN's map by one unit."""
    torch.manual_seed(0)
    feats = SmallCNN().features.eval()
    jump = receptive_field(layer_geometry(feats))[1]
    digits = torch.zeros(2, 1, 60, 60)
    digits[:, :, 22:38, 22:38] = torch.rand(2, 1, 16, 16)
    with torch.no_grad():                 # compared one unit away from the frame
        moved, base = feats(shift(digits, jump, jump)), feats(digits)
        assert torch.allclose(moved[..., 2:-1, 2:-1], base[..., 1:-2, 1:-2], atol=1e-5)
        assert not torch.allclose(feats(shift(digits, 4, 4))[..., 2:-1, 2:-1], base[..., 1:-2, 1:-2], atol=1e-3)


@pytest.mark.parametrize("name,good,bad", [
    ("pointwise_conv", lambda x, w, b: F.conv2d(x, w, b), lambda x, w, b: F.conv2d(x, w)),
    ("separable_width", lambda c, k, budget: max(0, (budget - c * k * k - c) // (c + 1)),
     lambda c, k, budget: max(0, (budget - c * k * k) // c)),
    ("rank_correlation", lambda a, b: spearman(a[None], b[None])[0],
     lambda a, b: torch.corrcoef(torch.stack([a, b]))[0, 1]),
    ("exact_shifts", lambda layers, m: [d for d in range(1, m + 1) if d % receptive_field(layers)[1] == 0],
     lambda layers, m: [d for d in range(1, m + 1) if d % layers[-1][1] == 0]),
])
def test_modern_cnn_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)

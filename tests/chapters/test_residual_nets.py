"""The residual_nets chapter: its from-scratch normalisations against PyTorch, its models and plumbing, and
its exercise checks (each accepts a right answer and rejects a typical wrong one)."""
import math

import pytest
import torch
from torch import nn

from book.lab.residual_nets import accuracy_in_mode, batch_dependence, grad_norms, seeded, weighted_layers
from book.nn.models import BasicBlock, ResidualMLP, SmallResNet
from book.nn.norm import BatchNorm, LayerNorm


@pytest.mark.parametrize("shape,Reference", [((16, 4), nn.BatchNorm1d), ((4, 4, 3, 3), nn.BatchNorm2d)])
def test_batchnorm_matches_torch_in_both_modes(shape, Reference):
    torch.manual_seed(0)
    ours, ref = BatchNorm(4, momentum=0.2), Reference(4, momentum=0.2)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2)
        ours.bias.normal_()
        ref.weight.copy_(ours.weight)
        ref.bias.copy_(ours.bias)
    for _ in range(4):
        x = (torch.randn(shape) * 2 - 1).requires_grad_()
        y1, y2 = ours(x), ref(x)
        torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
        g1, = torch.autograd.grad(y1.pow(2).sum(), x)
        g2, = torch.autograd.grad(y2.pow(2).sum(), x)
        torch.testing.assert_close(g1, g2, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval()
    ref.eval()
    x = torch.randn(shape)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_batchnorm_errors():
    with pytest.raises(ValueError, match="num_features"):
        BatchNorm(0)
    with pytest.raises(ValueError, match="expects"):
        BatchNorm(3)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="more than one value"):
        BatchNorm(3)(torch.zeros(1, 3))
    assert BatchNorm(3).eval()(torch.zeros(1, 3)).shape == (1, 3)   # eval mode: a single example is fine


@pytest.mark.parametrize("shape,normalized", [((5, 8), 8), ((2, 3, 8), 8), ((2, 3, 4), (3, 4))])
def test_layernorm_matches_torch(shape, normalized):
    torch.manual_seed(1)
    ours, ref = LayerNorm(normalized), nn.LayerNorm(normalized)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2)
        ours.bias.normal_()
        ref.weight.copy_(ours.weight)
        ref.bias.copy_(ours.bias)
    x = (torch.randn(shape) * 3).requires_grad_()
    y1, y2 = ours(x), ref(x)
    torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
    g1, = torch.autograd.grad(y1.pow(3).sum(), x)
    g2, = torch.autograd.grad(y2.pow(3).sum(), x)
    torch.testing.assert_close(g1, g2, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="expects"):
        ours(torch.zeros(2, 7))


def test_residual_mlp_differs_from_plain_only_by_the_skips():
    plain = seeded(lambda: ResidualMLP(4, 16, skip=False), 3)
    res = seeded(lambda: ResidualMLP(4, 16, skip=True), 3)
    for a, b in zip(plain.state_dict().values(), res.state_dict().values()):
        assert torch.equal(a, b)                       # the same initial weights
    x = torch.randn(8, 1, 28, 28)
    assert not torch.allclose(plain(x), res(x))
    for block in res.blocks:                           # branches off: the residual net is stem + head
        nn.init.zeros_(block[2].weight)
        nn.init.zeros_(block[2].bias)
    torch.testing.assert_close(res(x), res.head(res.stem(x)))
    with pytest.raises(ValueError):
        ResidualMLP(-1, 16)


def test_basic_block_and_small_resnet():
    x = torch.relu(torch.randn(2, 8, 14, 14))
    block = BasicBlock(8, 8)
    nn.init.zeros_(block.bn2.weight)
    assert torch.equal(block(x), x)
    assert isinstance(BasicBlock(8, 16, 2).shortcut, nn.Sequential)
    plain = BasicBlock(8, 16, 2, skip=False)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in plain.modules())
    net = SmallResNet((4, 8, 16), blocks=2)
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    plain_net = SmallResNet((4, 8, 16), blocks=3, skip=False)
    convs = [m for m in plain_net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(convs) == 20
    with pytest.raises(ValueError):
        SmallResNet((4, 8), blocks=1)


def test_grad_norms_and_weighted_layers():
    net = seeded(lambda: ResidualMLP(3, 8), 0)
    assert len(weighted_layers(net)) == 5              # stem, 3 blocks, head
    norms = grad_norms(net, torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,)))
    assert len(norms) == 5 and all(n > 0 for n in norms)
    assert all(p.grad is None or not p.grad.any() for p in net.parameters())


def test_accuracy_in_mode_restores_the_model():
    net = seeded(lambda: ResidualMLP(2, 8), 0).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(20, 1, 28, 28), torch.randint(0, 10, (20,))
    a_eval = accuracy_in_mode(net, x, y, 5, train_mode=False)
    accuracy_in_mode(net, x, y, 4, train_mode=True)
    assert not net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert a_eval == pytest.approx((net(x).argmax(1) == y).float().mean().item())


def test_batch_dependence():
    x = torch.randn(40, 6)
    assert batch_dependence(nn.LayerNorm(6), x[:4], x[4:]) < 1e-6
    assert batch_dependence(nn.BatchNorm1d(6).eval(), x[:4], x[4:]) == 0
    assert batch_dependence(nn.BatchNorm1d(6), x[:4], x[4:]) > 0.01
    with pytest.raises(ValueError, match="other examples"):
        batch_dependence(nn.LayerNorm(6), x[:4], x[4:10])


def _resnet_params(widths, blocks, stride_projects=True):
    """SmallResNet's parameter count; the wrong variant projects only when the channels change."""
    def block(c_in, c_out, stride):
        proj = c_in != c_out or (stride != 1 and stride_projects)
        return 9 * c_in * c_out + 9 * c_out ** 2 + 4 * c_out + ((c_in * c_out + 2 * c_out) if proj else 0)
    n, c = 11 * widths[0], widths[0]
    for i, w in enumerate(widths):
        for j in range(blocks):
            n += block(c, w, 2 if i > 0 and j == 0 else 1)
            c = w
    return n + 10 * c + 10


@pytest.mark.parametrize("name,good,bad", [
    ("batchnorm_eval", lambda x, m, v, g, b, eps: g * (x - m) / torch.sqrt(v + eps) + b,
     lambda x, m, v, g, b, eps: g * (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps) + b),
    ("running_mean_after", lambda k, m, a: m * (1 - (1 - a) ** k), lambda k, m, a: m * (1 - a) ** k),
    ("branch_scale", lambda L: math.sqrt(2 ** (1 / L) - 1), lambda L: 1 / math.sqrt(L)),
    ("small_resnet_params", _resnet_params, lambda w, b: _resnet_params(w, b, stride_projects=False)),
    ("layer_norm_last", lambda x, eps: (x - x.mean(-1, keepdim=True))
     / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps),
     lambda x, eps: (x - x.mean(0, keepdim=True)) / torch.sqrt(x.var(0, unbiased=False, keepdim=True) + eps)),
])
def test_residual_nets_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)

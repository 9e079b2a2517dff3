"""The training_practice chapter: its exercise checks accept a right answer and reject a typical wrong one."""
import math

import pytest
import torch



@pytest.mark.parametrize("name,good,bad", [
    ("init_std", lambda k, i, o: math.sqrt(2 / (i + o)) if k == "xavier" else math.sqrt(2 / i),
     lambda k, i, o: math.sqrt(1 / i)),
    ("batchnorm_forward", lambda x, eps: (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps),
     lambda x, eps: (x - x.mean(0)) / torch.sqrt(x.var(0) + eps)),
    ("warmup_cosine_lr", lambda s, T, w, b: (b * (s + 1) / w if s < w
                                             else b * 0.5 * (1 + math.cos(math.pi * (s - w) / (T - w)))),
     lambda s, T, w, b: b * 0.5 * (1 + math.cos(math.pi * s / T))),
    ("clip_by_norm", lambda gs, m: [g * min(1.0, m / float(torch.sqrt(sum((t ** 2).sum() for t in gs)))) for g in gs],
     lambda gs, m: [g.clamp(-m, m) for g in gs]),
])
def test_training_practice_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("init,variance", [
    ("naive", lambda fan_in, fan_out: 0.01 ** 2),
    ("xavier", lambda fan_in, fan_out: 2 / (fan_in + fan_out)),   # Glorot & Bengio
    ("he", lambda fan_in, fan_out: 2 / fan_in),                   # He et al., for tanh too: no 5/3 gain
])
def test_deep_mlp_weight_variance_is_the_chapters_formula(act, init, variance):
    """deep_mlp's init= gives every hidden layer the variance the chapter (and its exercise) teaches."""
    from book.nn.models import deep_mlp
    torch.manual_seed(0)
    net = deep_mlp(depth=3, width=512, act=act, init=init)
    hidden = [m for m in net if isinstance(m, torch.nn.Linear)][:-1]
    assert len(hidden) == 3
    for lin in hidden:
        fan_out, fan_in = lin.weight.shape
        assert lin.weight.var().item() == pytest.approx(variance(fan_in, fan_out), rel=0.02)
        assert abs(lin.weight.mean().item()) < 0.01 * math.sqrt(variance(fan_in, fan_out))
        assert torch.equal(lin.bias, torch.zeros_like(lin.bias))


def test_deep_mlp_default_init_is_pytorchs():
    from book.nn.models import deep_mlp
    torch.manual_seed(0)
    lin = deep_mlp(depth=1, width=512, init="default")[1]
    assert lin.weight.var().item() == pytest.approx(1 / (3 * 784), rel=0.02)   # U(±1/√fan_in)

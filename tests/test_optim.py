import pytest
import torch

from book.optim import OPTIMIZERS, Adam, Momentum, RMSprop, SGD, make_optimizer

PAIRS = [
    (lambda p: SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    (lambda p: Momentum(p, lr=0.05, momentum=0.8), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8)),
    (lambda p: RMSprop(p, lr=0.01, alpha=0.9), lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9)),
    (lambda p: Adam(p, lr=0.01, betas=(0.8, 0.99)), lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99))),
]


@pytest.mark.parametrize("ours,theirs", PAIRS)
def test_scratch_matches_torch_optim(ours, theirs):
    g = torch.Generator().manual_seed(0)
    p0 = [torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)]
    a = [t.clone().requires_grad_() for t in p0]
    b = [t.clone().requires_grad_() for t in p0]
    oa, ob = ours(a), theirs(b)
    for _ in range(100):
        for pa, pb in zip(a, b):
            grad = torch.randn(pa.shape, generator=g, dtype=torch.float64)
            pa.grad, pb.grad = grad.clone(), grad.clone()
        oa.step()
        ob.step()
    for pa, pb in zip(a, b):
        assert torch.allclose(pa, pb, atol=1e-10)


def test_scratch_optimizer_trains_a_real_model():
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -1.0, 2.0])
    model = torch.nn.Linear(3, 1)
    opt = Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = ((model(x).squeeze(1) - y) ** 2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_parameters_without_grad_are_skipped():
    p, q = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = SGD([p, q], lr=1.0)
    p.grad = torch.ones(2)
    opt.step()
    assert torch.equal(p, torch.zeros(2)) and torch.equal(q, torch.ones(2))


def test_errors():
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="positive"):
        Adam([torch.zeros(1)], lr=0)
    with pytest.raises(ValueError, match="unknown optimizer 'Lion'"):
        make_optimizer("Lion", [torch.zeros(1)], lr=0.1)
    assert set(OPTIMIZERS) == {"SGD", "Momentum", "RMSprop", "Adam"}

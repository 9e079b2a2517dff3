"""The using_models chapter: book.nn.moe against dense and direct computations, the in-context regression
plumbing (baselines against torch.linalg, the transformer's shapes and causality, the monitor), the MoE
experiment, and the exercise checks."""
import numpy as np
import pytest
import torch

from book.lab.using_models import (
    ICLMonitor,
    ICLTransformer,
    MoENet,
    effective_experts,
    error_by_examples,
    icl_batch,
    least_squares_predictions,
    moe_task,
    train_icl,
    train_moe,
)
from book.nn.counting import count_params
from book.nn.moe import MoE, load_balancing_loss, top_k_gates


def test_top_k_gates_softmax_over_the_chosen_logits():
    logits = torch.tensor([[1.0, 3.0, 2.0, -1.0]])
    w, idx = top_k_gates(logits, 2)
    assert idx.tolist() == [[1, 2]]
    assert torch.allclose(w, torch.tensor([[3.0, 2.0]]).softmax(-1))
    w_all, _ = top_k_gates(logits, 4)
    assert torch.allclose(w_all.sort(-1).values, logits.softmax(-1).sort(-1).values)
    with pytest.raises(ValueError, match="between 1"):
        top_k_gates(logits, 5)
    with pytest.raises(ValueError, match="between 1"):
        MoE(8, 8, 4, k=0)


def test_moe_with_every_expert_is_the_dense_mixture_and_gradients_match():
    torch.manual_seed(0)
    moe = MoE(12, 16, 5, k=5)
    x = torch.randn(2, 7, 12, requires_grad=True)
    flat = x.reshape(-1, 12)
    dense = (moe.router(flat).softmax(-1)[..., None]
             * torch.stack([e(flat) for e in moe.experts], 1)).sum(1).reshape(x.shape)
    assert torch.allclose(moe(x), dense, atol=1e-5)
    g1, = torch.autograd.grad(moe(x).square().sum(), x)
    g2, = torch.autograd.grad(dense.square().sum(), x)
    assert torch.allclose(g1, g2, atol=1e-4)


def test_moe_top1_runs_each_token_through_its_expert_only():
    torch.manual_seed(1)
    moe = MoE(8, 8, 4, k=1)
    x = torch.randn(20, 8)
    idx = moe.router(x).argmax(-1)
    direct = torch.stack([moe.experts[int(i)](xi) for i, xi in zip(idx, x)])   # gate weight 1 for k = 1
    assert torch.allclose(moe(x), direct, atol=1e-5)
    assert torch.allclose(moe.usage, torch.bincount(idx, minlength=4).float() / 20)
    assert abs(moe.usage.sum().item() - 1) < 1e-6


def test_load_balancing_loss_values_and_gradient():
    E, N = 4, 40
    uniform = torch.full((N, E), 1 / E)
    assert abs(load_balancing_loss(uniform, torch.arange(N)[:, None] % E).item() - 1) < 1e-6
    one_hot = torch.zeros(N, E)
    one_hot[:, 2] = 1
    assert abs(load_balancing_loss(one_hot, torch.full((N, 1), 2)).item() - E) < 1e-6
    logits = torch.randn(N, E, requires_grad=True)
    probs = logits.softmax(-1)
    loss = load_balancing_loss(probs, torch.zeros(N, 1, dtype=torch.long))   # every token on expert 0
    g, = torch.autograd.grad(loss, logits)
    assert (g[:, 0] > 0).all()            # descending the loss lowers the over-used expert's logit


def test_least_squares_baselines_against_torch():
    g = torch.Generator().manual_seed(0)
    xs, ys, w = icl_batch(50, 8, 3, generator=g)
    assert xs.shape == (50, 8, 3) and ys.shape == (50, 8) and w.shape == (50, 3)
    assert torch.allclose(ys, (xs @ w[:, :, None])[..., 0])
    pred = least_squares_predictions(xs, ys)
    assert torch.all(pred[:, 0] == 0)
    assert torch.allclose(pred[:, 3:], ys[:, 3:], atol=1e-3)        # exact once k >= d (no noise)
    lam = 0.5
    X, y = xs[0, :4].double(), ys[0, :4].double()
    w_r = torch.linalg.solve(X.T @ X + lam * torch.eye(3, dtype=torch.float64), X.T @ y)
    ridge = least_squares_predictions(xs.double(), ys.double(), ridge=lam)[0, 4]
    assert torch.allclose(ridge, w_r @ xs[0, 4].double())
    err = error_by_examples(torch.zeros_like(ys), ys, 3)
    assert err.shape == (8,) and 0.5 < err.mean() < 1.5


def test_icl_transformer_is_causal_in_the_prompt():
    torch.manual_seed(2)
    model = ICLTransformer(3, 6, n_embd=16, n_layer=1, n_head=2).eval()
    xs, ys, _ = icl_batch(2, 6, 3)
    out = model(xs, ys)
    assert out.shape == (2, 6)
    ys2 = ys.clone()
    ys2[:, 3] += 5.0                     # y_3 may change predictions at x_4 and later only
    out2 = model(xs, ys2)
    assert torch.allclose(out[:, :4], out2[:, :4], atol=1e-6)
    assert not torch.allclose(out[:, 4:], out2[:, 4:], atol=1e-4)


def test_train_icl_learns_and_the_monitor_replays():
    g = torch.Generator().manual_seed(3)
    xs, ys, _ = icl_batch(200, 6, 2, generator=g)
    monitor = ICLMonitor({"zero": error_by_examples(torch.zeros_like(ys), ys, 2)})
    with pytest.raises(RuntimeError, match="nothing to replay"):
        monitor.replay()
    _, err = train_icl(2, 6, 150, batch=32, lr=3e-3, n_embd=16, n_layer=1, n_head=2, eval_set=(xs, ys),
                       monitor=monitor, log_every=50)
    assert len(monitor.records) == 3
    assert err[3:].mean() < 0.8 * err[0]         # a few steps already use the examples
    assert "<script" in monitor.replay().data


def test_moe_task_and_training():
    g = torch.Generator().manual_seed(0)
    x, y, maps = moe_task(100, generator=g)
    assert x.shape == (100, 8) and y.shape == (100, 8) and maps.shape == (8, 8, 8)
    with pytest.raises(ValueError, match="at most dim"):
        moe_task(10, dim=4, n_clusters=8)
    assert count_params(MoENet(8, 16, 16, 4, 1)) > 0
    r = train_moe(0.01, seed=0, steps=60, n_experts=4)
    assert r["mse"] < r["baseline"]
    assert abs(r["usage"].sum().item() - 1) < 1e-6
    assert effective_experts(torch.full((8,), 1 / 8)) == pytest.approx(8)
    assert effective_experts(torch.tensor([1.0, 0, 0])) == pytest.approx(1)
    assert np.isfinite(effective_experts(r["usage"]))


def _balance_good(probs, idx):
    E = probs.shape[-1]
    f = torch.bincount(idx.reshape(-1), minlength=E).to(probs.dtype) / idx.numel()
    return E * (f * probs.mean(0)).sum()


def _balance_bad(probs, idx):                   # forgets the factor E
    return _balance_good(probs, idx) / probs.shape[-1]


def _ridge_good(X, y, xq, lam):
    A = X.T @ X + lam * torch.eye(X.shape[1], dtype=X.dtype)
    return float(torch.linalg.solve(A, X.T @ y) @ xq)


def _ridge_bad(X, y, xq, lam):                  # plain least squares: ignores lambda
    return float((torch.linalg.pinv(X) @ y) @ xq)


def _active_good(dim, hidden, E, k):
    one = 2 * dim * hidden + hidden + dim
    return dim * E + E * one, dim * E + k * one


def _active_bad(dim, hidden, E, k):             # forgets the biases
    one = 2 * dim * hidden
    return dim * E + E * one, dim * E + k * one


@pytest.mark.parametrize("name, good, bad", [
    ("balance_loss", _balance_good, _balance_bad),
    ("min_norm_error", lambda d, k: max(d - k, 0) / d, lambda d, k: k / d),
    ("ridge_predict", _ridge_good, _ridge_bad),
    ("moe_active_params", _active_good, _active_bad),
])
def test_checks_accept_good_and_reject_bad(check_verdict, name, good, bad):
    check_verdict(name, good, bad)

"""The backprop chapter: book.nn.autodiff (Value, Tensor) against torch.autograd, and its checks."""
import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from book.nn.autodiff import (
    MLP,
    Tensor,
    Value,
    bce_with_logits,
    draw_graph,
    graph_layout,
    linear_backward,
    linear_forward,
    numerical_grad,
    topological_order,
)


def test_value_matches_torch_autograd():
    a, b, c = Value(1.5, label="a"), Value(-2.0, label="b"), Value(0.7, label="c")
    out = ((a * b + c).tanh() * a - b / c + (a ** 2).exp().log() + c.relu() + b.relu() + (a - 3).sigmoid()) / 2
    out.backward()
    ta, tb, tc = (torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (1.5, -2.0, 0.7))
    ref = (torch.tanh(ta * tb + tc) * ta - tb / tc + torch.log(torch.exp(ta ** 2)) + torch.relu(tc) + torch.relu(tb)
           + torch.sigmoid(ta - 3)) / 2
    ref.backward()
    assert out.data == pytest.approx(ref.item(), abs=1e-12)     # the chapter's claim: agreement to 1e-12
    for v, t in ((a, ta), (b, tb), (c, tc)):
        assert v.grad == pytest.approx(t.grad.item(), abs=1e-12)


def test_value_reused_node_accumulates_and_backward_is_repeatable():
    x = Value(3.0)
    y = x * x + x           # dy/dx = 2x + 1 = 7
    y.backward()
    assert x.grad == 7.0
    y.backward()            # a second backward recomputes, it does not add up
    assert x.grad == 7.0
    assert (2 - x / 3).data == pytest.approx(1.0) and (6 / x).data == 2.0 and (1 + x).data == 4.0  # reflected ops


def test_value_errors():
    with pytest.raises(TypeError, match="pass the number"):
        Value(Value(1.0))
    with pytest.raises(TypeError, match="cannot combine"):
        Value(1.0) + "2"
    with pytest.raises(ValueError, match="non-positive"):
        Value(-1.0).log()
    with pytest.raises(TypeError, match="constant powers"):
        Value(2.0) ** Value(2.0)


def test_deep_graph_needs_no_recursion():
    x = Value(1.0)
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.backward()
    assert x.grad == 1.0 and len(topological_order(y)) > 5000


def test_scalar_mlp_learns_xor():
    xs = [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]
    ys = [-1.0, 1.0, 1.0, -1.0]
    net = MLP(2, [6, 1], seed=1)
    for _ in range(200):
        loss = sum(((net(x) - y) ** 2 for x, y in zip(xs, ys)), Value(0.0))
        loss.backward()
        for p in net.parameters():
            p.data -= 0.05 * p.grad
    assert loss.data < 0.05
    assert len(net.parameters()) == 6 * 3 + 7


def test_tensor_matches_torch_and_finite_differences():
    rng = np.random.default_rng(0)
    X, W1, b1, W2 = rng.normal(size=(5, 3)), rng.normal(size=(3, 4)), rng.normal(size=(1, 4)), rng.normal(size=(4, 1))
    y = (rng.random(5) > 0.5).astype(float)

    def loss_of(w1):
        return bce_with_logits((Tensor(X) @ Tensor(w1) + Tensor(b1)).tanh() @ Tensor(W2), y).data.item()
    tw = [Tensor(a) for a in (W1, b1, W2)]
    loss = bce_with_logits((Tensor(X) @ tw[0] + tw[1]).tanh() @ tw[2], y)
    loss.backward()
    refs = [torch.tensor(a, requires_grad=True) for a in (W1, b1, W2)]
    z = (torch.tensor(X) @ refs[0] + refs[1]).tanh() @ refs[2]
    F.binary_cross_entropy_with_logits(z.squeeze(1), torch.tensor(y)).backward()
    assert loss.data.item() == pytest.approx(F.binary_cross_entropy_with_logits(z.squeeze(1), torch.tensor(y)).item(),
                                             abs=1e-12)
    for t, r in zip(tw, refs):
        assert np.allclose(t.grad, r.grad.numpy(), rtol=0, atol=1e-12)
    assert np.allclose(tw[0].grad, numerical_grad(loss_of, W1), atol=1e-6)


def test_tensor_relu_softplus_and_errors():
    x = Tensor([[-1.0, 2.0]])
    (x.relu() * 3.0 + x.softplus() - 1.0).sum().backward()
    assert np.allclose(x.grad, [[0 + 1 / (1 + math.e), 3 + 1 / (1 + math.exp(-2))]], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="matmul needs"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="scalar"):
        Tensor(np.ones(3)).backward()


def test_graph_layout_and_drawing():
    import matplotlib.pyplot as plt
    a, b = Value(2.0, label="a"), Value(3.0, label="b")
    out = a * b + a
    out.backward()
    pos = graph_layout(out)
    assert pos[id(a)][0] == 0 and pos[id(out)][0] == 2 and pos[id(out)][1] == 0  # centred
    fig, ax = plt.subplots()
    draw_graph(ax, out, show_values={id(a)}, show_grads=set(), highlight=id(a))
    texts = [t.get_text() for t in ax.texts]
    assert "a\n2" in texts and any(t.endswith("?") for t in texts)
    plt.close(fig)


def _mlp_grads(X, W1, b1, W2, b2, Y, tanh_grad=True):
    H = torch.tanh(X @ W1 + b1)
    G2 = 2 * (H @ W2 + b2 - Y) / Y.numel()
    G1 = G2 @ W2.T * ((1 - H ** 2) if tanh_grad else 1)
    return X.T @ G1, G1.sum(0), H.T @ G2, G2.sum(0)


def _jac_rows(f, x):
    out, pullback = torch.func.vjp(f, x)
    return torch.stack([pullback(e)[0] for e in torch.eye(out.numel(), dtype=out.dtype)])


@pytest.mark.parametrize("name,good,bad", [
    ("grad_f", lambda a, b, c: (2 * (a * b + c) * b, 2 * (a * b + c) * a, 2 * (a * b + c)),
     lambda a, b, c: (b, a, 1.0)),
    ("numerical_derivative", lambda f, x: (f(x + 1e-5) - f(x - 1e-5)) / 2e-5, lambda f, x: (f(x + 1e-2) - f(x)) / 1e-2),
    ("tanh_backward", lambda x, g: g * (1 - torch.tanh(x) ** 2), lambda x, g: 1 - torch.tanh(x) ** 2),
    ("linear_layout_backward", lambda x, w, g: (g @ w, g.T @ x, g.sum(0)),
     lambda x, w, g: (g @ w.T, x.T @ g, g.sum(0))),                  # the chapter's layout, not nn.Linear's
    ("mlp_grads", _mlp_grads, partial(_mlp_grads, tanh_grad=False)),  # forgot the tanh's derivative
    ("jacobian_by_vjps", _jac_rows, lambda f, x: _jac_rows(f, x).T),  # columns instead of rows
    ("gelu_saved_bytes", lambda b, w, d: 4 * b * w * 2 * d,
     lambda b, w, d: 4 * b * w * (d + 1)),                            # ReLU's count
])
def test_backprop_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)


def test_linear_backward_matches_autograd_for_numpy_and_torch():
    g = torch.Generator().manual_seed(7)
    X, W, b, G = (torch.randn(s, generator=g, dtype=torch.float64) for s in ((6, 4), (4, 3), (3,), (6, 3)))
    Xr, Wr, br = (t.clone().requires_grad_() for t in (X, W, b))
    linear_forward(Xr, Wr, br).backward(G)
    for ours, ref in zip(linear_backward(X, W, G), (Xr.grad, Wr.grad, br.grad)):
        assert ours.shape == ref.shape and torch.allclose(ours, ref, atol=1e-12)
    np_grads = linear_backward(X.numpy(), W.numpy(), G.numpy())
    assert all(np.allclose(a, r.numpy()) for a, r in zip(np_grads, (Xr.grad, Wr.grad, br.grad)))
    with pytest.raises(ValueError, match="dY has shape"):
        linear_backward(X, W, G.T)


def test_graph_stepper_walks_both_passes():
    from book.lab.backprop import GraphStepper
    n = GraphStepper.n_nodes()
    st = GraphStepper()
    grads = st.gradients()
    tw = torch.tensor([-0.5, 0.8, 0.3], dtype=torch.float64, requires_grad=True)
    ((torch.tanh(tw[0] * 2.0 + tw[1] * -1.0 + tw[2]) - 1.0) ** 2).backward()
    assert np.allclose([grads["w1"], grads["w2"], grads["b"]], tw.grad.numpy())
    assert st.gradients(x1=0.0)["w1"] == 0.0
    first, last = st.draw(step=0), st.draw(step=2 * n - 1)
    assert first["grad"] is None and last["grad"] is not None
    assert st.draw(step=n) == {"node": "L", "value": grads["L"], "grad": 1.0}   # backward starts at L
    assert "backward pass" in st.axes.get_title()
    from book.lab.backprop import _local_derivative
    g = st.graph(x1=0.7, w2=-1.2)                      # the chain rule, node by node
    order = topological_order(g["L"])
    for v in order[:-1]:
        total = sum(c.grad * _local_derivative(c, v) for c in order if v in c._prev)
        assert total == pytest.approx(v.grad, abs=1e-12)
    with pytest.raises(ValueError, match="no local derivative"):
        _local_derivative(Value(1.0).exp(), Value(1.0))
    assert "<script" in st.player("step", [0, n, 2 * n - 1]).data
    st.show()
    with pytest.raises(ValueError, match="step must be"):
        GraphStepper(step=2 * n)
    with pytest.raises(TypeError, match="unknown settings"):
        GraphStepper(x3=1.0)


def test_saved_activation_bytes_follow_the_formula():
    from torch import nn

    from book.lab.backprop import mlp_blocks, saved_activation_bytes
    for depth, batch, width in ((1, 4, 8), (3, 5, 16)):
        x = torch.randn(batch, width)
        assert saved_activation_bytes(mlp_blocks(width, depth), x) == 4 * batch * width * (depth + 1)
        assert saved_activation_bytes(mlp_blocks(width, depth, nn.GELU), x) == 4 * batch * width * 2 * depth
    with torch.no_grad():
        assert saved_activation_bytes(mlp_blocks(8, 2), torch.randn(3, 8)) == 0


def test_forward_and_reverse_mode_gradients_agree():
    from torch import nn

    from book.lab.backprop import flat_loss, grad_by_jvps, grad_by_vjp
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    x, y = torch.randn(10, 3), torch.randn(10, 1)
    f, theta = flat_loss(net, x, y, F.mse_loss)
    (g_fwd, n_fwd), (g_rev, n_rev) = grad_by_jvps(f, theta), grad_by_vjp(f, theta)
    F.mse_loss(net(x), y).backward()
    g_auto = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    assert n_fwd == theta.numel() == 21 and n_rev == 1
    assert torch.allclose(g_fwd, g_auto, atol=1e-6) and torch.allclose(g_rev, g_auto, atol=1e-6)
    assert torch.allclose(f(theta), F.mse_loss(net(x), y))

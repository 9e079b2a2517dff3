"""The backprop chapter: book.nn.autodiff (Value, Tensor) against torch.autograd, and its checks."""
import math

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


@pytest.mark.parametrize("name,good,bad", [
    ("grad_f", lambda a, b, c: (2 * (a * b + c) * b, 2 * (a * b + c) * a, 2 * (a * b + c)),
     lambda a, b, c: (b, a, 1.0)),
    ("numerical_derivative", lambda f, x: (f(x + 1e-5) - f(x - 1e-5)) / 2e-5, lambda f, x: (f(x + 1e-2) - f(x)) / 1e-2),
    ("matmul_backward", lambda X, W, G: (G @ W.T, X.T @ G), lambda X, W, G: (G @ W.T, G.T @ X)),
    ("tanh_backward", lambda x, g: g * (1 - torch.tanh(x) ** 2), lambda x, g: 1 - torch.tanh(x) ** 2),
])
def test_backprop_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)

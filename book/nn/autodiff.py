"""Reverse-mode automatic differentiation from scratch: a scalar engine and a small tensor engine.

Chapter: taught in ``backprop``.

``Value`` holds one number, remembers which operation made it from which inputs, and knows that
operation's local derivative. ``backward()`` visits the graph in reverse topological order and applies the
chain rule: each node adds ``local derivative × its output's gradient`` into its inputs' gradients.
``Tensor`` does the same for NumPy arrays (matrix products, broadcasting). Both are tested against
``torch.autograd`` and by finite differences (``tests/chapters/test_backprop.py``).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np


# =========================================================================== scalars
class Value:
    """A scalar node of a computational graph."""

    def __init__(self, data: float, _children: tuple = (), _op: str = "", label: str = ""):
        if isinstance(data, Value):
            raise TypeError("Value(Value(...)): pass the number, not another Value")
        self.data = float(data)
        self.grad = 0.0
        self._prev = _children
        self._op = _op
        self._backward: Callable[[], None] = lambda: None
        self.label = label

    def __repr__(self) -> str:
        return f"Value({self.label + '=' if self.label else ''}{self.data:.4g}, grad={self.grad:.4g})"

    @staticmethod
    def _wrap(x) -> "Value":
        if isinstance(x, Value):
            return x
        if isinstance(x, (int, float)):
            return Value(x)
        raise TypeError(f"cannot combine a Value with {type(x).__name__}; use numbers or Values")

    # -- operations: each sets out._backward to push out.grad into its inputs
    def __add__(self, other):
        other = self._wrap(other)
        out = Value(self.data + other.data, (self, other), "+")

        def backward():
            self.grad += out.grad
            other.grad += out.grad
        out._backward = backward
        return out

    def __mul__(self, other):
        other = self._wrap(other)
        out = Value(self.data * other.data, (self, other), "×")

        def backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = backward
        return out

    def __pow__(self, k):
        if not isinstance(k, (int, float)):
            raise TypeError("only constant powers are supported: v ** 2, v ** -1")
        out = Value(self.data ** k, (self,), f"^{k:g}")

        def backward():
            self.grad += k * self.data ** (k - 1) * out.grad
        out._backward = backward
        return out

    def exp(self):
        out = Value(math.exp(self.data), (self,), "exp")

        def backward():
            self.grad += out.data * out.grad
        out._backward = backward
        return out

    def log(self):
        if self.data <= 0:
            raise ValueError(f"log of a non-positive number ({self.data})")
        out = Value(math.log(self.data), (self,), "log")

        def backward():
            self.grad += out.grad / self.data
        out._backward = backward
        return out

    def tanh(self):
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def backward():
            self.grad += (1 - t * t) * out.grad
        out._backward = backward
        return out

    def relu(self):
        out = Value(max(self.data, 0.0), (self,), "relu")

        def backward():
            self.grad += (self.data > 0) * out.grad
        out._backward = backward
        return out

    def sigmoid(self):
        s = 1 / (1 + math.exp(-self.data)) if self.data >= 0 else math.exp(self.data) / (1 + math.exp(self.data))
        out = Value(s, (self,), "σ")

        def backward():
            self.grad += s * (1 - s) * out.grad
        out._backward = backward
        return out

    def __neg__(self):
        return self * -1

    def __sub__(self, other):
        return self + (-self._wrap(other))

    def __truediv__(self, other):
        return self * self._wrap(other) ** -1

    def __radd__(self, other):
        return self + other

    def __rmul__(self, other):
        return self * other

    def __rsub__(self, other):
        return self._wrap(other) - self

    def __rtruediv__(self, other):
        return self._wrap(other) / self

    # -- the chain rule over the whole graph
    def backward(self):
        """Set every gradient in the graph below this node: d(self)/d(node)."""
        order = topological_order(self)
        for v in order:
            v.grad = 0.0
        self.grad = 1.0
        for v in reversed(order):
            v._backward()


def topological_order(root) -> list:
    """Nodes so that each comes after all of its inputs (depth-first, iterative: deep graphs are fine)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in node._prev if id(child) not in seen)
    return order


class Neuron:
    def __init__(self, n_in: int, rng: np.random.Generator, act: str = "tanh"):
        self.w = [Value(rng.uniform(-1, 1) / math.sqrt(n_in)) for _ in range(n_in)]
        self.b = Value(0.0)
        self.act = act

    def __call__(self, x):
        z = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return {"tanh": z.tanh, "relu": z.relu, "linear": lambda: z}[self.act]()

    def parameters(self):
        return self.w + [self.b]


class MLP:
    """A multilayer perceptron of ``Value`` neurons: ``MLP(2, [8, 8, 1])``; the last layer is linear."""

    def __init__(self, n_in: int, sizes: list[int], seed: int = 0, act: str = "tanh"):
        rng = np.random.default_rng(seed)
        dims = [n_in] + list(sizes)
        self.layers = [[Neuron(dims[i], rng, act if i < len(sizes) - 1 else "linear") for _ in range(dims[i + 1])]
                       for i in range(len(sizes))]

    def __call__(self, x):
        for layer in self.layers:
            x = [n(x) for n in layer]
        return x[0] if len(x) == 1 else x

    def parameters(self):
        return [p for layer in self.layers for n in layer for p in n.parameters()]


# =========================================================================== tensors
def _unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a gradient back to the shape of an input that NumPy broadcast (e.g. a bias row)."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for i, n in enumerate(shape):
        if n == 1 and grad.shape[i] != 1:
            grad = grad.sum(axis=i, keepdims=True)
    return grad


class Tensor:
    """A NumPy array that records operations for reverse-mode differentiation."""

    def __init__(self, data, _children: tuple = (), _op: str = ""):
        self.data = np.asarray(data, dtype=np.float64)
        self.grad = np.zeros_like(self.data)
        self._prev = _children
        self._op = _op
        self._backward = lambda: None

    shape = property(lambda self: self.data.shape)

    def __repr__(self):
        return f"Tensor(shape={self.shape}, op={self._op or 'leaf'})"

    @staticmethod
    def _wrap(x):
        return x if isinstance(x, Tensor) else Tensor(x)

    def __add__(self, other):
        other = self._wrap(other)
        out = Tensor(self.data + other.data, (self, other), "+")

        def backward():
            self.grad += _unbroadcast(out.grad, self.shape)
            other.grad += _unbroadcast(out.grad, other.shape)
        out._backward = backward
        return out

    def __mul__(self, other):
        other = self._wrap(other)
        out = Tensor(self.data * other.data, (self, other), "×")

        def backward():
            self.grad += _unbroadcast(other.data * out.grad, self.shape)
            other.grad += _unbroadcast(self.data * out.grad, other.shape)
        out._backward = backward
        return out

    def __matmul__(self, other):
        if self.data.ndim != 2 or other.data.ndim != 2 or self.shape[1] != other.shape[0]:
            raise ValueError(f"matmul needs (n, k) @ (k, m), got {self.shape} @ {other.shape}")
        out = Tensor(self.data @ other.data, (self, other), "@")

        def backward():
            self.grad += out.grad @ other.data.T     # (n, m) @ (m, k) -> (n, k)
            other.grad += self.data.T @ out.grad     # (k, n) @ (n, m) -> (k, m)
        out._backward = backward
        return out

    def tanh(self):
        t = np.tanh(self.data)
        out = Tensor(t, (self,), "tanh")

        def backward():
            self.grad += (1 - t * t) * out.grad
        out._backward = backward
        return out

    def relu(self):
        out = Tensor(np.maximum(self.data, 0), (self,), "relu")

        def backward():
            self.grad += (self.data > 0) * out.grad
        out._backward = backward
        return out

    def softplus(self):
        """log(1 + e^x), computed stably; its derivative is the sigmoid."""
        out = Tensor(np.logaddexp(0, self.data), (self,), "softplus")

        def backward():
            self.grad += 0.5 * (1 + np.tanh(0.5 * self.data)) * out.grad   # sigmoid, overflow-free
        out._backward = backward
        return out

    def sum(self):
        out = Tensor(self.data.sum(), (self,), "sum")

        def backward():
            self.grad += np.ones_like(self.data) * out.grad
        out._backward = backward
        return out

    def mean(self):
        return self.sum() * (1.0 / self.data.size)

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-self._wrap(other))

    def __radd__(self, other):
        return self + other

    def __rmul__(self, other):
        return self * other

    def backward(self):
        if self.data.size != 1:
            raise ValueError(f"backward() starts from a scalar (a loss), got shape {self.shape}")
        order = topological_order(self)
        for t in order:
            t.grad = np.zeros_like(t.data)
        self.grad = np.ones_like(self.data)
        for t in reversed(order):
            t._backward()


def bce_with_logits(z: Tensor, y) -> Tensor:
    """Mean binary cross-entropy from logits: softplus(z) - z·y (= -[y log σ(z) + (1-y) log(1-σ(z))])."""
    y = np.asarray(y, dtype=np.float64).reshape(z.shape)
    return (z.softplus() - z * y).mean()


# =========================================================================== a layer by hand
def linear_forward(X, W, b):
    """Y = X W + b for a batch: X (N, d_in), W (d_in, d_out), b (d_out,). NumPy arrays or torch tensors."""
    return X @ W + b


def linear_backward(X, W, dY):
    """The backward pass of :func:`linear_forward`, derived in ``backprop``: given dY = ∂L/∂Y (N, d_out),
    return (dX, dW, db) = (dY Wᵀ, Xᵀ dY, column sums of dY) with the shapes of X, W and b."""
    if dY.shape != (X.shape[0], W.shape[1]) or X.shape[1] != W.shape[0]:
        raise ValueError(f"linear_backward: X {tuple(X.shape)}, W {tuple(W.shape)} give Y of shape "
                         f"({X.shape[0]}, {W.shape[1]}), but dY has shape {tuple(dY.shape)}")
    return dY @ W.T, X.T @ dY, dY.sum(0)


# =========================================================================== checking
def numerical_grad(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences (f(x + eps) - f(x - eps)) / 2 eps, one coordinate at a time."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        hi = f(x)
        x[i] = old - eps
        lo = f(x)
        x[i] = old
        g[i] = (hi - lo) / (2 * eps)
    return g


# =========================================================================== drawing
def graph_layout(root) -> dict:
    """Positions {id(node): (x, y)}: x is the depth from the inputs, but each input (leaf) sits one column
    left of its first consumer, so inputs and constants spread out instead of piling up in column 0."""
    order = topological_order(root)
    depth = {}
    for v in order:
        depth[id(v)] = 1 + max((depth[id(c)] for c in v._prev), default=-1)
    consumers: dict[int, list[int]] = {}
    for v in order:
        for c in v._prev:
            consumers.setdefault(id(c), []).append(depth[id(v)])
    for v in order:
        if not v._prev and id(v) in consumers:
            depth[id(v)] = min(consumers[id(v)]) - 1
    rows: dict[int, int] = {}
    pos = {}
    for v in order:
        d = depth[id(v)]
        pos[id(v)] = (d, rows.get(d, 0))
        rows[d] = rows.get(d, 0) + 1
    # centre each column vertically, 1.3 units between rows so that three-line boxes do not touch
    return {k: (x, 1.3 * (y - (rows[x] - 1) / 2)) for k, (x, y) in pos.items()}


def draw_graph(ax, root, show_values: set | None = None, show_grads: set | None = None, highlight=None):
    """Draw the graph of ``root``: one box per node with its label, operation, value and gradient.

    ``show_values`` / ``show_grads`` are sets of node ids whose value / gradient is shown (default: all);
    the player uses them to step through the forward and backward passes. ``highlight`` is a node id.
    """
    order = topological_order(root)
    pos = graph_layout(root)
    everyone = {id(v) for v in order}
    show_values = everyone if show_values is None else show_values
    show_grads = everyone if show_grads is None else show_grads
    ax.clear()
    ax.axis("off")
    for v in order:
        x, y = pos[id(v)]
        for c in v._prev:
            cx, cy = pos[id(c)]
            ax.annotate("", xy=(x - 0.38, y), xytext=(cx + 0.38, cy),
                        arrowprops=dict(arrowstyle="->", color="gray", lw=0.8))
    for v in order:
        x, y = pos[id(v)]
        name = v.label or (v._op if v._op else "const")  # an unnamed leaf is a constant
        val = f"{v.data:.3g}" if id(v) in show_values else "?"
        grad = f"{v.grad:.3g}" if id(v) in show_grads else ""
        text = f"{name}\n{val}" + (f"\n∂={grad}" if grad else "")
        face = "#ffe08a" if highlight == id(v) else ("#d8ecff" if not v._prev else "#eeeeee")
        ax.text(x, y, text, ha="center", va="center", fontsize=7,
                bbox=dict(boxstyle="round,pad=0.3", fc=face, ec="#555555"))
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.invert_yaxis()
    return pos

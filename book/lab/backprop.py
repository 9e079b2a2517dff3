"""The backprop chapter's plumbing: a computation-graph stepper, a meter of saved tensors, and the two
ways (forward mode, reverse mode) of getting a gradient.

* :class:`GraphStepper` -- the chapter's neuron L = (tanh(w1·x1 + w2·x2 + b) − t)² as a graph, with sliders
  for its inputs and a step control that walks the forward pass and then the backward pass node by node
  (an :class:`book.ui.explorer.Explorer`).
* :func:`saved_activation_bytes` -- the bytes autograd keeps for the backward pass of ``model(x)``;
  :func:`mlp_blocks` -- the stacks of Linear + activation it is measured on.
* :func:`flat_loss`, :func:`grad_by_jvps`, :func:`grad_by_vjp` -- a loss as a function of one flat
  parameter vector, and its gradient from n forward-mode products or from one reverse-mode product.
"""
from __future__ import annotations

import torch
from torch import nn

from book.nn.autodiff import Value, draw_graph, topological_order
from book.ui.explorer import Explorer

_INPUTS = ("x1", "x2", "w1", "w2", "b", "t")


class GraphStepper(Explorer):
    """L = (tanh(w1·x1 + w2·x2 + b) − t)²: edit the inputs, then step through the passes.

    ``step`` counts from 0: steps 0 … n−1 compute the values of the n nodes in topological order (the
    forward pass), steps n … 2n−1 visit them in reverse and apply each node's local derivative (the
    backward pass). The current node is yellow; ``?`` marks a value not computed yet. The title says what
    the current step computes.
    """

    defaults = dict(x1=2.0, x2=-1.0, w1=-0.5, w2=0.8, b=0.3, t=1.0, step=0)
    layout = dict(figsize=(12, 4.6))
    per_row = 4

    def _controls(self):
        import ipywidgets as w
        ctl = {k: w.FloatSlider(min=-3, max=3, step=0.1, description=k, continuous_update=False)
               for k in _INPUTS}
        ctl["step"] = w.IntSlider(min=0, max=2 * self.n_nodes() - 1, description="step")
        return ctl

    def _validate(self, s, changed):
        n = self.n_nodes()
        if not (isinstance(s["step"], int) and 0 <= s["step"] < 2 * n):
            raise ValueError(f"step must be an integer from 0 to {2 * n - 1}, got {s['step']!r}")

    @staticmethod
    def n_nodes() -> int:
        """How many nodes the graph has (it does not depend on the input values)."""
        return len(topological_order(GraphStepper.build(**{k: 1.0 for k in _INPUTS})["L"]))

    @staticmethod
    def build(x1, x2, w1, w2, b, t) -> dict:
        """The graph for these inputs, after ``backward()``: ``{label: Value}`` (L is the loss)."""
        v = {k: Value(float(x), label=k) for k, x in dict(x1=x1, x2=x2, w1=w1, w2=w2, b=b, t=t).items()}
        z = v["w1"] * v["x1"] + v["w2"] * v["x2"] + v["b"]
        z.label = "z"
        y = z.tanh()
        y.label = "y"
        loss = (y - v["t"]) ** 2
        loss.label = "L"
        loss.backward()
        return {**v, "z": z, "y": y, "L": loss}

    def graph(self, **override) -> dict:
        s = self.resolve(**override)
        return self.build(**{k: s[k] for k in _INPUTS})

    def gradients(self, **override) -> dict:
        """∂L/∂(input) for every input, and L itself."""
        g = self.graph(**override)
        return {"L": g["L"].data, **{k: g[k].grad for k in _INPUTS}}

    def draw(self, **override):
        s = self.resolve(**override)
        g = self.graph(**override)
        order = topological_order(g["L"])
        n, i = len(order), s["step"]
        self.figure()
        ax = self.axes
        if i < n:   # forward: nodes 0..i have values, no gradient yet
            node = order[i]
            draw_graph(ax, g["L"], show_values={id(v) for v in order[: i + 1]}, show_grads=set(),
                       highlight=id(node))
            what = (f"input {node.label or 'constant'} = {node.data:.3g}" if not node._prev
                    else f"{node.label or node._op} = {node._op}(...) = {node.data:.3g}")
            ax.set_title(f"forward pass, step {i + 1}/{n}: {what}", fontsize=10)
        else:       # backward: the last (i - n + 1) nodes have their final gradient
            done = order[::-1][: i - n + 1]
            node = done[-1]
            draw_graph(ax, g["L"], show_grads={id(v) for v in done}, highlight=id(node))
            name = node.label or node._op or "constant"
            if node is g["L"]:
                how = "the start: ∂L/∂L = 1"
            else:
                terms = [(c, _local_derivative(c, node)) for c in order if node in c._prev]
                how = " + ".join(f"({c.grad:.3g})·({d:.3g})" for c, d in terms)
                how = f"Σ over consumers of ∂L/∂consumer · local derivative = {how}"
            ax.set_title(f"backward pass, step {i - n + 1}/{n}: ∂L/∂{name} = {node.grad:.3g}\n{how}",
                         fontsize=10)
        return {"node": node.label or node._op, "value": node.data,
                "grad": node.grad if i >= n else None}


def _local_derivative(out: Value, inp: Value) -> float:
    """∂out/∂inp for one operation of the stepper's graph (+, ×, tanh, constant power)."""
    if out._op == "+":
        return float(sum(c is inp for c in out._prev))
    if out._op == "×":
        a, b = out._prev
        return (b.data if a is inp else 0.0) + (a.data if b is inp else 0.0)
    if out._op == "tanh":
        return 1 - out.data ** 2
    if out._op.startswith("^"):
        k = float(out._op[1:])
        return k * inp.data ** (k - 1)
    raise ValueError(f"no local derivative for the operation {out._op!r}")


# --------------------------------------------------------------------------- memory
def saved_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for the backward pass of ``model(x)``, the parameters excluded.

    ``torch.autograd.graph.saved_tensors_hooks`` calls ``pack`` on every tensor an operation saves; a buffer
    saved twice (a ReLU's output is also the next Linear's input) is counted once, by its storage.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(seen.values())


def mlp_blocks(width: int, depth: int, act=nn.ReLU) -> nn.Sequential:
    """``depth`` blocks of Linear(width, width) followed by ``act()``."""
    return nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), act())])


# --------------------------------------------------------------------------- forward vs reverse mode
def flat_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn):
    """``(f, theta)``: f(theta) = loss_fn(model with parameters theta (one flat vector), x, y), theta now."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def f(th):
        params, i = {}, 0
        for name, shape in zip(names, shapes):
            params[name] = th[i:i + shape.numel()].view(shape)
            i += shape.numel()
        return loss_fn(torch.func.functional_call(model, params, (x,)), y)
    return f, theta


def grad_by_jvps(f, theta: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The gradient of a scalar f at theta by forward mode: one JVP per direction e_i; returns (grad, calls)."""
    eye = torch.eye(theta.numel(), dtype=theta.dtype)
    parts = [torch.func.jvp(f, (theta,), (e,))[1] for e in eye]
    return torch.stack(parts), len(parts)


def grad_by_vjp(f, theta: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The same gradient by reverse mode: one VJP with the cotangent 1; returns (grad, calls)."""
    out, pullback = torch.func.vjp(f, theta)
    (grad,) = pullback(torch.ones_like(out))
    return grad, 1

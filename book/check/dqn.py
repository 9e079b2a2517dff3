"""Self-checks for the chapter "Deep Q-networks: learning action values"."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from book.check.core import Case, _g, _rel, run_cases
from book.lab import dqn as lab

__all__ = ["bellman_targets", "linear_epsilon", "huber", "corridor_value", "max_bias"]


def bellman_targets(fn) -> None:
    """``fn(rewards, next_q, dones, gamma)`` -> y = r + gamma * (1 - done) * max_a' next_q[:, a'] (B,)."""
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    cases = [Case((t(0.0, 1.0), t([0.5, 2.0], [3.0, -1.0]), torch.tensor([False, True]), 0.9), None,
                  label="two transitions; the second ends the episode"),
             Case((t(-1.0), t([0.2, 0.1, 0.4]), torch.tensor([False]), 0.5), None,
                  label="one transition, three actions, gamma 0.5")]
    g = _g(3)
    for b, a in ((16, 4), (5, 2)):
        r = torch.randn(b, generator=g, dtype=torch.float64)
        q = torch.randn(b, a, generator=g, dtype=torch.float64)
        d = torch.rand(b, generator=g) < 0.3
        cases.append(Case((r, q, d, 0.99), None, public=False, label=f"{b} random transitions, {a} actions"))
    cases.append(Case((t(1.0, 1.0), t([-3.0, -2.0], [-1.0, -5.0]), torch.tensor([False, False]), 1.0), None,
                      public=False, label="all next values negative"))
    for c in cases:
        c.expected = lab.bellman_targets(*c.args)
    run_cases("bellman_targets", fn, cases,
              hint="the max is over actions (dim 1) of next_q; a terminal transition has no future: y = r")


def linear_epsilon(fn) -> None:
    """``fn(step, start, end, decay_steps)`` -> epsilon falling linearly from start to end over decay_steps
    steps, then staying at end."""
    args = [((0, 1.0, 0.1, 100), True), ((50, 1.0, 0.1, 100), True), ((100, 1.0, 0.1, 100), True),
            ((250, 1.0, 0.1, 100), True), ((30, 0.5, 0.05, 60), False), ((7, 0.2, 0.2, 10), False),
            ((1000, 1.0, 0.01, 999), False), ((1, 1.0, 0.0, 4), False)]
    cases = [Case(a, lab.linear_epsilon(*a), public=p, label=f"step {a[0]}, {a[1]} -> {a[2]} over {a[3]}")
             for a, p in args]
    run_cases("linear_epsilon", lambda *a: float(fn(*a)), cases, compare=_rel,
              hint="the fraction of the schedule done is min(step / decay_steps, 1)")


def huber(fn) -> None:
    """``fn(pred, target, delta)`` -> mean Huber loss: ``0.5 e^2`` for ``|e| <= delta``, else
    ``delta (|e| - delta/2)``."""
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    cases = [Case((t(0.0, 0.5, 3.0), t(0.0, 0.0, 0.0), 1.0), None, label="errors 0, 0.5 and 3, delta 1"),
             Case((t(-2.0, 2.0), t(0.0, 0.5), 2.0), None, label="delta 2")]
    g = _g(7)
    for n, d in ((50, 1.0), (9, 0.3)):
        cases.append(Case((3 * torch.randn(n, generator=g, dtype=torch.float64),
                           torch.randn(n, generator=g, dtype=torch.float64), d), None, public=False,
                          label=f"{n} random errors, delta {d}"))
    for c in cases:                      # the reference is PyTorch's own loss
        c.expected = F.huber_loss(c.args[0], c.args[1], delta=c.args[2])
    run_cases("huber", fn, cases, hint="torch.where(|e| <= delta, 0.5 * e**2, delta * (|e| - delta / 2)).mean()")


def corridor_value(fn) -> None:
    """``fn(n, gamma, step_reward)`` -> V*(s) of a cell n moves from the goal at the end of a corridor:
    every move gives ``step_reward`` except the one into the goal, which gives +1. Checked against value
    iteration on the corridor itself."""
    def truth(n, gamma, step_reward):
        world = lab.GridWorld(["." * n + "G"], step_reward=step_reward)
        return float(lab.value_iteration(world.tables(), gamma).max(1).values[0])
    args = [((1, 0.9, 0.0), True), ((4, 0.9, 0.0), True), ((4, 0.9, -0.1), True), ((7, 0.5, -0.2), False),
            ((10, 0.99, -0.05), False), ((3, 0.0, -1.0), False), ((6, 0.8, 0.1), False)]
    cases = [Case(a, truth(*a), public=p, label=f"n={a[0]}, gamma={a[1]}, step reward {a[2]}")
             for a, p in args]
    run_cases("corridor_value", lambda *a: float(fn(*a)), cases, compare=_rel,
              hint="n - 1 ordinary moves then the goal: a geometric sum of step rewards plus gamma^(n-1)")


def max_bias(fn) -> None:
    """``fn(sigma)`` -> E[max(X1, X2)] for independent X1, X2 ~ N(0, sigma^2): the overestimation of a max
    over two noisy value estimates whose true values are both 0. Checked by numerical integration of
    x * 2 phi(x) Phi(x) (the density of the max of two standard normals), scaled by sigma."""
    x = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    phi = torch.exp(-x ** 2 / 2) / (2 * torch.pi) ** 0.5
    Phi = 0.5 * (1 + torch.erf(x / 2 ** 0.5))
    unit = float(torch.trapezoid(x * 2 * phi * Phi, x))
    cases = [Case((s,), unit * s, public=p, label=f"sigma = {s}")
             for s, p in ((1.0, True), (0.5, True), (2.0, False), (0.1, False), (3.7, False))]
    run_cases("max_bias", lambda s: float(fn(s)), cases, compare=_rel,
              hint="max(X1, X2) = (X1 + X2) / 2 + |X1 - X2| / 2; X1 - X2 is normal too")

"""Self-checks for the chapter "Applications: recommendation and game-playing agents"."""
from __future__ import annotations

import math

import torch

from book.check.core import Case, run_cases

__all__ = ["hit_rate_at_k", "ndcg_at_k", "undo_downsampling", "discounted_returns", "epsilon_greedy_probs",
           "reinforce_loss"]

_LOG2_3 = math.log2(3)


def hit_rate_at_k(fn) -> None:
    """``fn(ranked, relevant, k)`` -> 1.0 if one of the first k ranked item ids is in ``relevant``, else 0.0."""
    cases = [Case(([5, 2, 9, 1], {2, 1, 7}, 3), 1.0, label="ranked [5, 2, 9, 1], relevant {1, 2, 7}, k=3"),
             Case(([5, 2, 9, 1], {1}, 3), 0.0, label="the only relevant item is 4th, k=3"),
             Case(([5, 2, 9, 1], {1}, 4), 1.0, label="... and k=4"),
             Case(([3, 4], set(), 2), 0.0, public=False, label="nothing relevant"),
             Case((list(range(100)), {99, 150}, 10), 0.0, public=False, label="relevant item far down"),
             Case((list(range(100)), {0}, 1), 1.0, public=False, label="k=1, top item relevant")]
    run_cases("hit_rate_at_k", lambda r, rel, k: float(fn(r, rel, k)), cases,
              hint="look only at ranked[:k]; the answer is a float, 1.0 or 0.0")


def ndcg_at_k(fn) -> None:
    """``fn(ranked, relevant, k)`` -> NDCG@k with binary relevance: DCG = sum_{r=1..k} rel_r / log2(r + 1),
    divided by the DCG of the best possible ranking (``min(k, |relevant|)`` hits at the top)."""
    ideal3 = 1 + 1 / _LOG2_3 + 0.5
    cases = [Case(([5, 2, 9, 1], {2, 1, 7}, 3), (1 / _LOG2_3) / ideal3,
                  label="ranked [5, 2, 9, 1], relevant {1, 2, 7}, k=3: one hit at rank 2"),
             Case(([5, 2, 9, 1], {2, 1, 7}, 4), (1 / _LOG2_3 + 1 / math.log2(5)) / ideal3,
                  label="... k=4: hits at ranks 2 and 4"),
             Case(([7, 3], {7}, 2), 1.0, label="the one relevant item first: perfect"),
             Case(([3, 7], {7}, 2), 1 / _LOG2_3, public=False, label="the one relevant item second"),
             Case(([1, 2, 3], {1, 2, 3, 4, 5}, 3), 1.0, public=False,
                  label="more relevant items than k, all top-k relevant: the ideal has only k hits"),
             Case(([4, 5, 6], {9}, 3), 0.0, public=False, label="no hit")]
    run_cases("ndcg_at_k", lambda r, rel, k: float(fn(r, rel, k)), cases,
              hint="rank r (1-based) is discounted by 1/log2(r + 1); the ideal DCG counts min(k, |relevant|) "
                   "hits, not |relevant|")



def undo_downsampling(fn) -> None:
    """``fn(p_s, w)`` -> the click probability on the full data, given the prediction ``p_s`` of a model
    calibrated on data where only a random fraction ``w`` of the non-clicks was kept (all clicks kept).
    Works on floats and on tensors of predictions."""
    from book.check._reference import _undo_downsampling_ref  # hidden from graded code

    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    cases = [Case((0.5, 0.1), _undo_downsampling_ref(0.5, 0.1), label="p_s = 0.5, one non-click in 10 kept"),
             Case((0.3, 1.0), 0.3, label="w = 1: nothing was dropped"),
             Case((t(0.0, 0.2, 0.9), 0.05), _undo_downsampling_ref(t(0.0, 0.2, 0.9), 0.05), public=False,
                  label="a tensor of predictions, w = 0.05"),
             Case((0.99, 0.01), _undo_downsampling_ref(0.99, 0.01), public=False,
                  label="a confident prediction after heavy downsampling")]
    run_cases("undo_downsampling", lambda p, w: fn(p, w), cases,
              hint="the odds p / (1 - p) after downsampling are the true odds divided by w")

def _returns(rewards, gamma):
    out, running = torch.zeros_like(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def discounted_returns(fn) -> None:
    """``fn(rewards, gamma)`` -> tensor G with G_t = r_t + gamma r_{t+1} + gamma^2 r_{t+2} + ... (1-D)."""
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    g = torch.Generator().manual_seed(5)
    cases = [Case((t(0.0, 0.0, 1.0), 0.9), t(0.81, 0.9, 1.0), label="reward 1 at the end, gamma 0.9"),
             Case((t(1.0, 1.0, 1.0), 1.0), t(3.0, 2.0, 1.0), label="gamma 1: sums of the remaining rewards"),
             Case((t(1.0, -1.0, 2.0), 0.0), t(1.0, -1.0, 2.0), label="gamma 0: G_t = r_t")]
    for n in (7, 20):
        r = torch.randn(n, generator=g, dtype=torch.float64)
        cases.append(Case((r, 0.95), _returns(r, 0.95), public=False, label=f"{n} random rewards"))
    run_cases("discounted_returns", fn, cases, hint="go backwards: G_T = r_T, then G_t = r_t + gamma * G_{t+1}")


def epsilon_greedy_probs(fn) -> None:
    """``fn(q, epsilon)`` -> probability of each action under epsilon-greedy: with probability epsilon a
    uniformly random action (the greedy one included), otherwise the action with the largest q."""
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    cases = [Case((t(1.0, 3.0, 2.0), 0.3), t(0.1, 0.8, 0.1), label="q = [1, 3, 2], epsilon 0.3"),
             Case((t(0.5, -1.0), 0.0), t(1.0, 0.0), label="epsilon 0: always greedy"),
             Case((t(0.5, -1.0, 2.0, 0.0), 1.0), t(0.25, 0.25, 0.25, 0.25), label="epsilon 1: uniform"),
             Case((t(-2.0, -1.0, -3.0, -5.0, -4.0), 0.1), t(0.02, 0.92, 0.02, 0.02, 0.02), public=False,
                  label="negative q values"),
             Case((t(10.0, 0.0), 0.5), t(0.75, 0.25), public=False, label="two actions")]
    run_cases("epsilon_greedy_probs", fn, cases,
              hint="every action gets epsilon / n_actions; the greedy action gets 1 - epsilon on top")


def _grads(fn):
    def run(log_probs, returns, baselines):
        lp = log_probs.clone().requires_grad_(True)
        b = baselines.clone().requires_grad_(True)
        loss = fn(lp, returns, b)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise TypeError(f"return a scalar tensor (a loss to call .backward() on), got "
                            f"{getattr(loss, 'shape', type(loss).__name__)}")
        g_lp, g_b = torch.autograd.grad(loss, [lp, b], allow_unused=True)
        return loss.detach(), g_lp, torch.zeros_like(b) if g_b is None else g_b
    return run


def reinforce_loss(fn) -> None:
    """``fn(log_probs, returns, baselines)`` -> scalar loss whose gradient is the REINFORCE-with-baseline
    estimate: mean over t of -(G_t - b_t) log pi(a_t|s_t), with the baseline treated as a constant.

    The check compares the loss, its gradient w.r.t. the log-probabilities, and verifies that no gradient
    flows into the baselines (they are fitted by their own loss, not by this one).
    """
    g = torch.Generator().manual_seed(9)
    cases = []
    for i, n in enumerate((3, 5, 12)):
        lp = -torch.rand(n, generator=g, dtype=torch.float64) * 2
        G, b = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
        expected = (-((G - b) * lp).mean(), -(G - b) / n, torch.zeros(n, dtype=torch.float64))
        cases.append(Case((lp, G, b), expected, public=i == 0,
                          label=f"T={n}: (loss, d loss/d log_probs, d loss/d baselines = 0)"))
    run_cases("reinforce_loss", _grads(fn), cases,
              hint="advantage = (returns - baselines).detach(); loss = -(advantage * log_probs).mean()")

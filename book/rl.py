"""Reinforcement learning on a tiny game: the Catch environment and REINFORCE with a baseline.

* :class:`Catch` is written here (no gym download). Balls fall one row per step from a random column of
  the top row; the agent moves a one-cell paddle along the bottom row. Catching a ball gives +1, missing
  it -1; ``n_balls`` balls fall one after another. It is *batched*: ``n_envs`` games step together, as
  one tensor operation, which is what makes policy-gradient training fast on a CPU.

  API (gym-like)::

      env = Catch(n_envs=1, seed=0)
      obs = env.reset()                          # (n_envs, 2, height, width): ball plane, paddle plane
      obs, reward, done = env.step(actions)      # actions (n_envs,) in {0: left, 1: stay, 2: right}

  Every game lasts exactly ``env.horizon = n_balls * (height - 1)`` steps; ``done`` is True on the last.

* :func:`reinforce` trains a policy network by the policy gradient of Williams (1992) with a learned
  state-value baseline: minimise ``-(G_t - V(s_t)) log pi(a_t | s_t)``.
"""
from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ACTIONS = ("left", "stay", "right")


class Catch:
    """A batch of ``n_envs`` independent Catch games on a ``height`` x ``width`` grid (see the module doc)."""

    def __init__(self, width: int = 7, height: int = 8, n_balls: int = 2, n_envs: int = 1,
                 device="cpu", seed: int = 0):
        if width < 3 or height < 3:
            raise ValueError(f"the grid must be at least 3 x 3, got height {height}, width {width}")
        if n_balls < 1 or n_envs < 1:
            raise ValueError(f"need n_balls >= 1 and n_envs >= 1, got {n_balls}, {n_envs}")
        self.width, self.height, self.n_balls, self.n_envs = width, height, n_balls, n_envs
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.t = None  # not reset yet

    @property
    def horizon(self) -> int:
        """Steps per game: each ball takes height - 1 steps to reach the paddle row."""
        return self.n_balls * (self.height - 1)

    @property
    def obs_shape(self) -> tuple:
        return (2, self.height, self.width)

    def _new_ball_col(self) -> torch.Tensor:
        return torch.randint(self.width, (self.n_envs,), generator=self.generator, device=self.device)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start new games (reseeding first if ``seed`` is given); return the first observation."""
        if seed is not None:
            self.generator.manual_seed(seed)
        self.t = 0
        self.ball_row = torch.zeros(self.n_envs, dtype=torch.long, device=self.device)
        self.ball_col = self._new_ball_col()
        self.paddle = torch.full((self.n_envs,), self.width // 2, dtype=torch.long, device=self.device)
        return self.observe()

    def observe(self) -> torch.Tensor:
        """(n_envs, 2, height, width) float: channel 0 has a 1 where the ball is, channel 1 where the paddle is."""
        obs = torch.zeros(self.n_envs, 2, self.height, self.width, device=self.device)
        idx = torch.arange(self.n_envs, device=self.device)
        obs[idx, 0, self.ball_row, self.ball_col] = 1.0
        obs[idx, 1, self.height - 1, self.paddle] = 1.0
        return obs

    def step(self, actions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Move every paddle (0 left, 1 stay, 2 right), let every ball fall one row.

        Returns ``(obs, reward, done)``: (n_envs, 2, H, W), (n_envs,) float in {-1, 0, +1}, (n_envs,) bool.
        """
        if self.t is None:
            raise RuntimeError("call env.reset() before env.step()")
        if self.t >= self.horizon:
            raise RuntimeError(f"the games are over (they last {self.horizon} steps); call env.reset()")
        if isinstance(actions, int) and self.n_envs == 1:
            actions = torch.tensor([actions])
        if not isinstance(actions, torch.Tensor) or actions.shape != (self.n_envs,) or actions.is_floating_point():
            raise ValueError(f"actions must be an integer tensor of shape ({self.n_envs},) with values in "
                             f"{{0, 1, 2}} = {ACTIONS}, got {getattr(actions, 'shape', type(actions).__name__)}")
        actions = actions.to(self.device)
        if actions.min() < 0 or actions.max() > 2:
            raise ValueError(f"actions must be 0 (left), 1 (stay) or 2 (right), got {actions.unique().tolist()}")
        self.paddle = (self.paddle + actions - 1).clamp(0, self.width - 1)
        self.ball_row = self.ball_row + 1
        self.t += 1
        landed = self.ball_row == self.height - 1                       # the same for every game
        reward = torch.zeros(self.n_envs, device=self.device)
        if bool(landed[0]):
            reward = (self.ball_col == self.paddle).float() * 2 - 1     # +1 caught, -1 missed
        obs = self.observe()                                            # shows the ball in the paddle row
        done = self.t >= self.horizon
        if bool(landed[0]) and not done:                                 # next ball appears at the top
            self.ball_row = torch.zeros_like(self.ball_row)
            self.ball_col = self._new_ball_col()
        return obs, reward, torch.full((self.n_envs,), done, device=self.device)


# ============================================================================ returns and policies
def discounted_returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = r_t + gamma * G_{t+1} along the last axis: rewards (..., T) -> returns (..., T)."""
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    out = torch.zeros_like(rewards, dtype=torch.float32 if not rewards.is_floating_point() else rewards.dtype)
    running = torch.zeros_like(out[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + gamma * running
        out[..., t] = running
    return out


class PolicyNet(nn.Module):
    """An MLP from the flattened screen (2·H·W) to 3 action logits."""

    def __init__(self, obs_shape: tuple, hidden: int = 64, n_out: int = 3):
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(obs_shape)), hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_out))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(f"expected observations of shape (B, {', '.join(map(str, self.obs_shape))}), "
                             f"got {tuple(obs.shape)}; build the net with PolicyNet(env.obs_shape)")
        return self.net(obs)                                            # (B, n_out)


def greedy_policy(policy: nn.Module):
    """obs -> the most probable action of ``policy`` (for evaluation)."""
    @torch.no_grad()
    def act(obs):
        return policy(obs).argmax(-1)
    return act


def random_policy(env: Catch, seed: int = 0):
    """obs -> uniformly random actions (the baseline every agent must beat)."""
    g = torch.Generator(device=env.device).manual_seed(seed)

    def act(obs):
        return torch.randint(3, (obs.shape[0],), generator=g, device=obs.device)
    return act


@torch.no_grad()
def evaluate_policy(act, env: Catch, episodes: int = 1000, seed: int = 12345) -> tuple[float, float]:
    """Mean and standard error of the (undiscounted) return of ``act`` over ``episodes`` games."""
    returns = []
    done_eps = 0
    while done_eps < episodes:
        obs = env.reset(seed=seed + done_eps)
        total = torch.zeros(env.n_envs, device=env.device)
        for _ in range(env.horizon):
            obs, r, _ = env.step(act(obs))
            total += r
        returns.append(total.cpu())
        done_eps += env.n_envs
    rets = torch.cat(returns)[:episodes]
    return float(rets.mean()), float(rets.std() / len(rets) ** 0.5)


# ============================================================================ REINFORCE with a baseline
def reinforce(env: Catch, policy: nn.Module, value: nn.Module, updates: int = 300, lr: float = 3e-3,
              gamma: float = 0.99, entropy_coef: float = 0.01, generator: torch.Generator | None = None,
              callback=None, every: int = 20) -> dict:
    """Train ``policy`` with REINFORCE and a learned baseline ``value`` (both on ``env.device``).

    Each update plays ``env.n_envs`` games to the end, computes the returns G_t, and takes one Adam step on

        loss = mean[-(G_t - V(s_t)) log pi(a_t|s_t)] + 0.5 mean[(G_t - V(s_t))^2] - entropy_coef * mean[H(pi(.|s_t))]

    (the advantage G_t - V(s_t) is treated as a constant in the first term). ``callback(history)`` runs
    every ``every`` updates and after the last. Returns the history: update index, mean return, seconds.
    """
    device = env.device
    g = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
    if g.device.type != device.type:
        raise ValueError(f"generator is on {g.device} but the environment on {device}: create it with "
                         f"torch.Generator(device=env.device)")
    opt = torch.optim.Adam(list(policy.parameters()) + list(value.parameters()), lr=lr)
    history = {"update": [], "mean_return": [], "seconds": []}
    start = time.perf_counter()
    for u in range(updates):
        obs = env.reset(seed=int(torch.randint(2**31 - 1, (1,), generator=g, device=device)))
        logps, rewards, values, entropies = [], [], [], []
        for _ in range(env.horizon):
            logits = policy(obs)                                          # (N, 3)
            logp_all = F.log_softmax(logits, -1)
            a = torch.multinomial(logp_all.exp(), 1, generator=g).squeeze(1)   # (N,)
            logps.append(logp_all.gather(1, a[:, None]).squeeze(1))
            entropies.append(-(logp_all.exp() * logp_all).sum(-1))
            values.append(value(obs).squeeze(-1))
            obs, r, _ = env.step(a)
            rewards.append(r)
        R = torch.stack(rewards, 1)                                       # (N, T)
        G = discounted_returns(R, gamma)                                  # (N, T)
        V = torch.stack(values, 1)                                        # (N, T)
        advantage = (G - V).detach()
        loss = (-(advantage * torch.stack(logps, 1)).mean() + 0.5 * (G - V).pow(2).mean()
                - entropy_coef * torch.stack(entropies, 1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history["update"].append(u)
        history["mean_return"].append(float(R.sum(1).mean()))
        history["seconds"].append(time.perf_counter() - start)
        if callback is not None and ((u + 1) % every == 0 or u == updates - 1):
            callback(history)
    return history


def plot_returns(ax, history: dict, random_return: float | None = None, best: float | None = None,
                 smooth: int = 10):
    """The training curve: mean return per update (faint) and its moving average, with reference lines."""
    ax.clear()
    y = np.asarray(history["mean_return"])
    x = np.asarray(history["update"])
    ax.plot(x, y, color="tab:blue", alpha=0.3, lw=0.8)
    if len(y) >= smooth:
        ax.plot(x[smooth - 1:], np.convolve(y, np.ones(smooth) / smooth, "valid"), color="tab:blue",
                label=f"mean return (moving average of {smooth})")
    if random_return is not None:
        ax.axhline(random_return, color="tab:red", ls="--", lw=1, label="random policy")
    if best is not None:
        ax.axhline(best, color="tab:green", ls=":", lw=1, label="catch every ball")
    ax.set(xlabel="update (one batch of games each)", ylabel="return per game")
    ax.legend(loc="lower right", fontsize=8)


# ============================================================================ watching a game
@torch.no_grad()
def record_episode(act, width: int = 7, height: int = 8, n_balls: int = 2, seed: int = 0) -> list[dict]:
    """Play one game with ``act`` and return its frames: ball, paddle, reward so far, at every step."""
    env = Catch(width, height, n_balls, n_envs=1, seed=seed)
    obs = env.reset(seed=seed)
    frames = [dict(ball=(int(env.ball_row), int(env.ball_col)), paddle=int(env.paddle), total=0.0, reward=0.0)]
    total = 0.0
    for _ in range(env.horizon):
        ball = (int(env.ball_row) + 1, int(env.ball_col))                 # where the ball is drawn after the step
        obs, r, _ = env.step(act(obs).cpu())
        total += float(r)
        frames.append(dict(ball=ball, paddle=int(env.paddle), total=total, reward=float(r)))
    return frames


def draw_catch(ax, frame: dict, width: int = 7, height: int = 8, title: str = ""):
    """Draw one frame of Catch: grid, ball (circle), paddle (bar), score in the title."""
    ax.clear()
    ax.set(xlim=(-0.5, width - 0.5), ylim=(height - 0.5, -0.5), xticks=[], yticks=[], aspect="equal")
    for x in range(width + 1):
        ax.axvline(x - 0.5, color="0.9", lw=0.5)
    for y in range(height + 1):
        ax.axhline(y - 0.5, color="0.9", lw=0.5)
    r, c = frame["ball"]
    color = {1.0: "tab:green", -1.0: "tab:red"}.get(frame["reward"], "tab:orange")
    ax.add_patch(plt.Circle((c, r), 0.35, color=color))
    ax.add_patch(plt.Rectangle((frame["paddle"] - 0.45, height - 0.75), 0.9, 0.5, color="tab:blue"))
    event = {1.0: " — caught!", -1.0: " — missed"}.get(frame["reward"], "")
    ax.set_title(f"{title}\nscore {frame['total']:+g}{event}", fontsize=9)

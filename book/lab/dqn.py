"""The dqn chapter: tabular Q-learning checked against value iteration, then a deep Q-network (DQN).

Everything runs on a generated gridworld small enough that the *exact* answer is computable, so every
learned number can be compared with the truth:

* :class:`GridWorld` -- a batched maze with the same interface as :class:`~book.lab.recsys_rl.Catch`
  (``reset(seed)``, ``step(actions) -> (obs, reward, done)``, ``horizon``, ``n_envs``, ``obs_shape``), so
  the REINFORCE code of the recsys_rl chapter trains on it unchanged. :meth:`GridWorld.tables` gives its
  model (next state and reward of every state-action pair) for the exact methods.
* :func:`value_iteration` (the ground truth Q*), :func:`policy_values` (the exact finite-horizon value of
  any policy: no sampling noise when comparing agents) and :func:`q_learning` (tabular, from samples).
* :func:`bellman_targets`, :func:`huber`, :class:`ReplayBuffer`, :func:`linear_epsilon` and :func:`dqn`
  (replay buffer + target network, each switchable for the ablations).
* :class:`DQNMonitor` (live curves, a :class:`~book.ui.explorer.Replay`) and :class:`QMapExplorer` (the
  greedy policy and the value map at a recorded training step, an :class:`~book.ui.explorer.Explorer`).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from book.lab.recsys_rl import PolicyNet
from book.ui import Explorer, RunsReplay

ACTIONS = ("up", "right", "down", "left")
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))

# '.' free, '#' wall, 'G' goal (+1, the episode ends), 'X' pit (-1, the episode ends)
TINY = ("..G",
        ".#X",
        "...")
MAZE = ("......",
        ".##.#.",
        "..X...",
        "#.#.#.",
        "..#...",
        ".X..#G")


@dataclass
class Tables:
    """The model of a deterministic gridworld: ``next_state`` (S, A) long, ``reward`` (S, A) float,
    ``terminal`` (S,) bool (goal and pits: no action there, value 0), ``free`` (S,) bool (not a wall) and
    ``starts`` (S,) bool (cells an episode may start in: free and not terminal), ``goal`` (S,) bool.
    State s = row * W + col."""

    next_state: torch.Tensor
    reward: torch.Tensor
    terminal: torch.Tensor
    free: torch.Tensor
    starts: torch.Tensor
    goal: torch.Tensor
    height: int
    width: int

    @property
    def n_states(self) -> int:
        return self.next_state.shape[0]


class GridWorld:
    """A batch of ``n_envs`` walks through the maze ``layout`` (strings of '.', '#', 'G', 'X').

    Each episode starts in a random free cell; actions 0-3 move up/right/down/left (into a wall or the edge:
    stay). Entering 'G' gives +1, 'X' gives -1, and the episode ends there; every other step gives
    ``step_reward``. Episodes last ``horizon`` steps for every game of the batch (a finished game stays
    frozen, reward 0, ``done`` True). The observation is a one-hot plane (N, 1, H, W) of the agent's cell.
    """

    def __init__(self, layout=MAZE, n_envs: int = 1, horizon: int = 20, step_reward: float = 0.0,
                 device="cpu", seed: int = 0):
        rows = [str(r) for r in layout]
        if not rows or len({len(r) for r in rows}) != 1 or set("".join(rows)) - set(".#GX"):
            raise ValueError("layout must be equal-length strings of '.', '#', 'G', 'X'")
        if "G" not in "".join(rows):
            raise ValueError("layout needs a goal 'G'")
        if n_envs < 1 or horizon < 1:
            raise ValueError(f"need n_envs >= 1 and horizon >= 1, got {n_envs}, {horizon}")
        self.layout, self.height, self.width = tuple(rows), len(rows), len(rows[0])
        self.n_envs, self.horizon, self.step_reward = n_envs, horizon, step_reward
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self._tables = self._build_tables()
        self._start_cells = self._tables.starts.nonzero().squeeze(1).to(self.device)
        self._next = self._tables.next_state.to(self.device)       # the model, on the env's device
        self._reward = self._tables.reward.to(self.device)
        self._terminal = self._tables.terminal.to(self.device)
        self.t = None

    @property
    def obs_shape(self) -> tuple:
        return (1, self.height, self.width)

    @property
    def n_actions(self) -> int:
        return len(ACTIONS)

    def _build_tables(self) -> Tables:
        H, W = self.height, self.width
        S, A = H * W, len(MOVES)
        cell = "".join(self.layout)
        nxt = torch.zeros(S, A, dtype=torch.long)
        rew = torch.full((S, A), float(self.step_reward))
        for s in range(S):
            r, c = divmod(s, W)
            for a, (dr, dc) in enumerate(MOVES):
                r2, c2 = r + dr, c + dc
                if not (0 <= r2 < H and 0 <= c2 < W) or cell[r2 * W + c2] == "#":
                    r2, c2 = r, c
                s2 = r2 * W + c2
                nxt[s, a] = s2
                if cell[s2] == "G":
                    rew[s, a] = 1.0
                elif cell[s2] == "X":
                    rew[s, a] = -1.0
        terminal = torch.tensor([ch in "GX" for ch in cell])
        free = torch.tensor([ch != "#" for ch in cell])
        nxt[terminal] = torch.arange(S)[terminal, None]   # absorbing, no reward
        rew[terminal] = 0.0
        goal = torch.tensor([ch == "G" for ch in cell])
        return Tables(nxt, rew, terminal, free, free & ~terminal, goal, H, W)

    def tables(self) -> Tables:
        """The maze's exact model (for value iteration and exact policy evaluation)."""
        return self._tables

    def one_hot(self, states: torch.Tensor) -> torch.Tensor:
        """(N,) state ids -> (N, 1, H, W) observations."""
        return F.one_hot(states.long(), self.height * self.width).float().view(-1, *self.obs_shape)

    def all_obs(self) -> torch.Tensor:
        """(S, 1, H, W): the observation of every cell, for reading a whole Q table off a network."""
        return self.one_hot(torch.arange(self.height * self.width, device=self.device))

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start new episodes in random start cells (reseeding first if ``seed`` is given)."""
        if seed is not None:
            self.generator.manual_seed(seed)
        self.t = 0
        pick = torch.randint(len(self._start_cells), (self.n_envs,), generator=self.generator,
                             device=self.device)
        self.state = self._start_cells[pick]
        self.finished = torch.zeros(self.n_envs, dtype=torch.bool, device=self.device)
        return self.one_hot(self.state)

    def step(self, actions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Move every agent; returns ``(obs, reward, done)`` with shapes (N, 1, H, W), (N,), (N,) bool."""
        if self.t is None:
            raise RuntimeError("call env.reset() before env.step()")
        if self.t >= self.horizon:
            raise RuntimeError(f"the episodes are over (they last {self.horizon} steps); call env.reset()")
        if isinstance(actions, int) and self.n_envs == 1:
            actions = torch.tensor([actions])
        if (not isinstance(actions, torch.Tensor) or actions.shape != (self.n_envs,)
                or actions.is_floating_point()):
            raise ValueError(f"actions must be an integer tensor of shape ({self.n_envs},) with values in "
                             f"0..3 = {ACTIONS}, got {getattr(actions, 'shape', type(actions).__name__)}")
        actions = actions.to(self.device)
        if actions.min() < 0 or actions.max() > 3:
            raise ValueError(f"actions must be in 0..3 {ACTIONS}, got {actions.unique().tolist()}")
        reward = torch.where(self.finished, 0.0, self._reward[self.state, actions])
        self.state = torch.where(self.finished, self.state, self._next[self.state, actions])
        self.finished = self.finished | self._terminal[self.state]
        self.t += 1
        return self.one_hot(self.state), reward, self.finished.clone()


# ============================================================================ exact solutions
def bellman_backup(q: torch.Tensor, tables: Tables, gamma: float) -> torch.Tensor:
    """One sweep of the Bellman optimality operator on a Q table (S, A):
    (T Q)(s, a) = r(s, a) + gamma * (1 - terminal(s')) * max_a' Q(s', a'), and 0 in terminal states."""
    nxt, r = tables.next_state, tables.reward.double()
    cont = (~tables.terminal[nxt]).double()            # (S, A) 0 where the move ends the episode
    new = r + gamma * cont * q.double().max(1).values[nxt]
    new[tables.terminal] = 0.0
    return new


def value_iteration(tables: Tables, gamma: float = 0.9, tol: float = 1e-10,
                    max_iters: int = 10_000) -> torch.Tensor:
    """Q* (S, A) by iterating Q <- r + gamma * (1 - terminal(s')) * max_a' Q(s', a') to a fixed point.

    Terminal states have Q = 0 (nothing happens after them). float64; raises if it has not converged."""
    if not 0 <= gamma < 1:
        raise ValueError(f"value iteration needs 0 <= gamma < 1, got {gamma}")
    q = torch.zeros(tuple(tables.next_state.shape), dtype=torch.float64)
    for _ in range(max_iters):
        new = bellman_backup(q, tables, gamma)
        if (new - q).abs().max() < tol:
            return new
        q = new
    raise RuntimeError(f"value iteration did not converge in {max_iters} iterations")


def policy_values(probs: torch.Tensor, tables: Tables, gamma: float = 0.9, horizon: int = 20) -> torch.Tensor:
    """The exact expected discounted return of each start state (S,) under the policy ``probs`` (S, A), over
    an episode of ``horizon`` steps: backward induction V_h = sum_a pi(a|s) [r + gamma (1 - term) V_{h-1}(s')]
    with V_0 = 0. No sampling: two agents compared with it differ only by their policies."""
    if probs.shape != tables.next_state.shape:
        raise ValueError(f"probs must be (states, actions) = {tuple(tables.next_state.shape)}, "
                         f"got {tuple(probs.shape)}")
    nxt, r = tables.next_state, tables.reward.double()
    cont = (~tables.terminal[nxt]).double()
    p = probs.double().cpu()
    v = torch.zeros(tables.n_states, dtype=torch.float64)
    for _ in range(horizon):
        v = (p * (r + gamma * cont * v[nxt])).sum(1)
        v[tables.terminal] = 0.0
    return v


def greedy_probs(q: torch.Tensor) -> torch.Tensor:
    """(S, A) one-hot of argmax_a q(s, a): the greedy policy as probabilities."""
    return F.one_hot(q.argmax(1), q.shape[1]).double()


def evaluate_q(q: torch.Tensor, tables: Tables, gamma: float = 0.9, horizon: int = 20) -> dict:
    """The greedy policy of a Q table (S, A), evaluated exactly from every start cell: mean discounted
    return ``value`` and the fraction of start cells from which it reaches the goal, ``success``."""
    v = policy_values(greedy_probs(q.detach().cpu()), tables, gamma, horizon)
    st = tables.starts
    # success: the undiscounted probability of ending in the goal = value with gamma 1 and pits worth 0
    goal_only = Tables(tables.next_state, tables.reward.clamp(min=0.0), tables.terminal, tables.free,
                       tables.starts, tables.goal, tables.height, tables.width)
    reach = policy_values(greedy_probs(q.detach().cpu()), goal_only, 1.0, horizon)
    return {"value": float(v[st].mean()), "success": float(reach[st].mean())}


def random_value(tables: Tables, gamma: float = 0.9, horizon: int = 20) -> float:
    """Mean exact return over start cells of the uniformly random policy (the floor)."""
    probs = torch.full(tuple(tables.next_state.shape), 1 / tables.next_state.shape[1], dtype=torch.float64)
    return float(policy_values(probs, tables, gamma, horizon)[tables.starts].mean())


# ============================================================================ tabular Q-learning
def q_learning(tables: Tables, steps: int = 20_000, alpha: float = 0.5, gamma: float = 0.9,
               epsilon: float = 0.3, horizon: int = 20, seed: int = 0) -> tuple[torch.Tensor, list]:
    """Tabular Q-learning (Watkins & Dayan, 1992) on the maze's model, one sampled transition at a time:

        Q(s, a) <- Q(s, a) + alpha * (r + gamma * (1 - terminal(s')) * max_a' Q(s', a') - Q(s, a)),

    acting epsilon-greedily; an episode restarts in a random start cell at a terminal cell or after
    ``horizon`` steps. Returns Q (S, A) float64 and ``(step, Q copy)`` every ``steps // 20`` steps (for
    plotting the error against Q*)."""
    if not (0 < alpha <= 1 and 0 <= epsilon <= 1):
        raise ValueError(f"need 0 < alpha <= 1 and 0 <= epsilon <= 1, got {alpha}, {epsilon}")
    rng = np.random.default_rng(seed)
    nxt, rew = tables.next_state.numpy(), tables.reward.double().numpy()
    term = tables.terminal.numpy()
    starts = tables.starts.nonzero().squeeze(1).numpy()
    n_actions = nxt.shape[1]
    q = np.zeros(nxt.shape)
    s, t = int(rng.choice(starts)), 0
    snaps, every = [], max(1, steps // 20)
    for step in range(steps):
        a = int(rng.integers(n_actions)) if rng.random() < epsilon else int(q[s].argmax())
        s2, r = int(nxt[s, a]), rew[s, a]
        target = r + (0.0 if term[s2] else gamma * q[s2].max())
        q[s, a] += alpha * (target - q[s, a])
        s, t = s2, t + 1
        if term[s] or t >= horizon:
            s, t = int(rng.choice(starts)), 0
        if (step + 1) % every == 0:
            snaps.append((step + 1, torch.from_numpy(q.copy())))
    return torch.from_numpy(q), snaps


# ============================================================================ DQN pieces
def bellman_targets(rewards: torch.Tensor, next_q: torch.Tensor, dones: torch.Tensor,
                    gamma: float) -> torch.Tensor:
    """y = r + gamma * (1 - done) * max_a' Q_target(s', a'): rewards (B,), next_q (B, A), dones (B,) bool."""
    if next_q.dim() != 2 or rewards.shape != next_q.shape[:1] or dones.shape != rewards.shape:
        raise ValueError(f"need rewards (B,), next_q (B, A), dones (B,), got {tuple(rewards.shape)}, "
                         f"{tuple(next_q.shape)}, {tuple(dones.shape)}")
    return rewards + gamma * (~dones.bool()).to(next_q.dtype) * next_q.max(1).values


def huber(pred: torch.Tensor, target: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Mean Huber loss: ``0.5 e^2`` where ``|e| <= delta``, else ``delta (|e| - delta / 2)`` -- the
    clipped-gradient TD loss of Mnih et al. (2015); equals ``F.huber_loss(pred, target, delta=delta)``."""
    e = (pred - target).abs()
    return torch.where(e <= delta, 0.5 * e ** 2, delta * (e - 0.5 * delta)).mean()


def linear_epsilon(step: int, start: float = 1.0, end: float = 0.05, decay_steps: int = 1000) -> float:
    """Exploration rate: from ``start`` down to ``end`` linearly over ``decay_steps`` steps, then ``end``."""
    if decay_steps <= 0 or step >= decay_steps:
        return end
    frac = max(step, 0) / decay_steps
    return start + frac * (end - start)


class ReplayBuffer:
    """A circular buffer of transitions (s, a, r, s', done) stored as tensors; ``sample`` draws uniformly.

    ``capacity`` equal to the batch size means "no replay": every update sees only the latest transitions.
    """

    def __init__(self, capacity: int, obs_shape: tuple, device="cpu"):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity, self.device = capacity, torch.device(device)
        self.obs = torch.zeros(capacity, *obs_shape, device=self.device)
        self.next_obs = torch.zeros_like(self.obs)
        self.actions = torch.zeros(capacity, dtype=torch.long, device=self.device)
        self.rewards = torch.zeros(capacity, device=self.device)
        self.dones = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        self.pos, self.size = 0, 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, actions, rewards, next_obs, dones) -> None:
        """Add a batch of N transitions (the oldest are overwritten when the buffer is full)."""
        n = len(actions)
        if n > self.capacity:
            obs, actions, rewards, next_obs, dones = (x[-self.capacity:] for x in
                                                      (obs, actions, rewards, next_obs, dones))
            n = self.capacity
        idx = (self.pos + torch.arange(n, device=self.device)) % self.capacity
        self.obs[idx], self.actions[idx], self.rewards[idx] = obs, actions, rewards
        self.next_obs[idx], self.dones[idx] = next_obs, dones
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple:
        if self.size == 0:
            raise RuntimeError("the buffer is empty: add transitions first")
        idx = torch.randint(self.size, (batch_size,), generator=generator, device=self.device)
        return self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.dones[idx]


def q_table(qnet: nn.Module, env: GridWorld) -> torch.Tensor:
    """The network's Q values of every cell, (S, A), on the CPU."""
    with torch.no_grad():
        return qnet(env.all_obs()).double().cpu()


def dqn(env: GridWorld, qnet: nn.Module, steps: int = 1500, lr: float = 1e-3, gamma: float = 0.9,
        batch_size: int = 64, buffer_size: int = 5000, target_every: int = 50, eps_start: float = 1.0,
        eps_end: float = 0.05, eps_decay_steps: int = 600, warmup_steps: int = 20,
        generator: torch.Generator | None = None, callback=None, every: int = 50,
        q_star: torch.Tensor | None = None) -> dict:
    """Train ``qnet`` (obs -> one Q value per action) with DQN (Mnih et al., 2015) on ``env``.

    Each step: all ``env.n_envs`` agents act epsilon-greedily (``linear_epsilon``), their transitions go
    into a :class:`ReplayBuffer` of ``buffer_size`` (transitions of games already over are not stored);
    then one Adam step on the Huber loss between Q(s, a) and the Bellman target computed with a *target
    network*, a copy of ``qnet`` refreshed every ``target_every`` updates. The ablations are one argument
    each: ``buffer_size=batch_size`` (no replay), ``target_every=1`` (no target network: bootstrap from the
    network being trained), ``eps_decay_steps`` / ``eps_start`` (the exploration schedule).

    Every ``every`` steps (and after the last) it records the step, environment steps, mean TD loss since
    the last record, epsilon, the whole Q table, the greedy policy's exact value (:func:`evaluate_q`) and,
    with ``q_star``, ``max |Q - Q*|`` over the start cells; then calls ``callback(history)``.
    """
    if batch_size > buffer_size:
        raise ValueError(f"buffer_size ({buffer_size}) must be >= batch_size ({batch_size})")
    if target_every < 1:
        raise ValueError(f"target_every must be >= 1 (1 = no target network), got {target_every}")
    device = env.device
    g = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
    tables = env.tables()
    target = copy.deepcopy(qnet).requires_grad_(False)
    opt = torch.optim.Adam(qnet.parameters(), lr=lr)
    buf = ReplayBuffer(buffer_size, env.obs_shape, device)
    hist = {k: [] for k in ("step", "env_steps", "td_loss", "epsilon", "value", "success", "q_error",
                            "q_mean", "q", "seconds")}
    obs = env.reset(seed=int(torch.randint(2**31 - 1, (1,), generator=g, device=device)))
    loss_sum, loss_n, env_steps, updates = torch.zeros((), device=device), 0, 0, 0
    start = time.perf_counter()
    for step in range(steps):
        eps = linear_epsilon(step, eps_start, eps_end, eps_decay_steps)
        with torch.no_grad():
            greedy = qnet(obs).argmax(1)
        explore = torch.rand(env.n_envs, generator=g, device=device) < eps
        rand = torch.randint(env.n_actions, (env.n_envs,), generator=g, device=device)
        actions = torch.where(explore, rand, greedy)
        alive = ~env.finished
        next_obs, r, done = env.step(actions)
        env_steps += env.n_envs
        if alive.any():
            buf.add(obs[alive], actions[alive], r[alive], next_obs[alive], done[alive])
        obs = next_obs
        if env.t >= env.horizon or bool(done.all()):
            obs = env.reset(seed=int(torch.randint(2**31 - 1, (1,), generator=g, device=device)))
        if step >= warmup_steps and len(buf) >= batch_size:
            s, a, rr, s2, d = buf.sample(batch_size, g)
            with torch.no_grad():
                y = bellman_targets(rr, (target if target_every > 1 else qnet)(s2), d, gamma)
            pred = qnet(s).gather(1, a[:, None]).squeeze(1)
            loss = huber(pred, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            updates += 1
            loss_sum += loss.detach()
            loss_n += 1
            if target_every > 1 and updates % target_every == 0:
                target.load_state_dict(qnet.state_dict())
        if (step + 1) % every == 0 or step == steps - 1:
            q = q_table(qnet, env)
            ev = evaluate_q(q, tables, gamma, env.horizon)
            hist["step"].append(step + 1)
            hist["env_steps"].append(env_steps)
            hist["td_loss"].append(float(loss_sum) / max(loss_n, 1))
            hist["epsilon"].append(eps)
            hist["value"].append(ev["value"])
            hist["success"].append(ev["success"])
            hist["q"].append(q)
            hist["q_mean"].append(float(q.max(1).values[tables.starts].mean()))
            hist["q_error"].append(float((q - q_star)[tables.starts].abs().max()) if q_star is not None
                                   else float("nan"))
            hist["seconds"].append(time.perf_counter() - start)
            loss_sum, loss_n = torch.zeros((), device=device), 0
            if callback is not None:
                callback(hist)
    return hist


def make_qnet(env: GridWorld, hidden: int = 64) -> nn.Module:
    """The Q network: the recsys_rl chapter's MLP (flattened screen -> hidden -> ReLU -> one output per
    action), reused, with 4 outputs."""
    return PolicyNet(env.obs_shape, hidden, n_out=env.n_actions)


def policy_table(policy: nn.Module, env: GridWorld) -> torch.Tensor:
    """A policy network's logits for every cell, (S, A). ``evaluate_q`` takes their argmax: the policy's most
    probable action, the same greedy reading as for a Q table."""
    return q_table(policy, env)


# ============================================================================ drawing
def draw_qmap(ax, q: torch.Tensor, tables: Tables, title: str = "", vmin: float = -1.0, vmax: float = 1.0,
              values: torch.Tensor | None = None):
    """max_a Q(s, a) as colour per cell, an arrow for the greedy action, walls black, G/X labelled."""
    ax.clear()
    H, W = tables.height, tables.width
    v = (q.max(1).values if values is None else values).double().clone()
    v[~tables.free] = float("nan")
    v[tables.terminal] = float("nan")
    ax.imshow(v.view(H, W).numpy(), cmap="RdYlGn", vmin=vmin, vmax=vmax)
    best = q.argmax(1)
    for s in range(H * W):
        r, c = divmod(s, W)
        if not tables.free[s]:
            ax.add_patch(_rect(c, r, "black"))
        elif tables.terminal[s]:
            is_goal = bool(tables.goal[s])
            ax.add_patch(_rect(c, r, "tab:green" if is_goal else "tab:red"))
            ax.text(c, r, "G" if is_goal else "X", ha="center", va="center", color="white",
                    fontsize=10, fontweight="bold")
        else:
            dr, dc = MOVES[int(best[s])]
            ax.arrow(c - 0.25 * dc, r - 0.25 * dr, 0.3 * dc, 0.3 * dr, head_width=0.18,
                     head_length=0.15, color="0.15", length_includes_head=True)
    ax.set(xticks=[], yticks=[], xlim=(-0.5, W - 0.5), ylim=(H - 0.5, -0.5))
    ax.set_title(title, fontsize=9)


def _rect(c, r, color):
    import matplotlib.pyplot as plt
    return plt.Rectangle((c - 0.5, r - 0.5), 1, 1, color=color)


class DQNMonitor(RunsReplay):
    """Live view of DQN runs: the greedy policy's exact value, the TD loss and the mean max-Q against the
    environment steps, one line per run (``start(name)`` before each run, ``log`` as ``dqn``'s callback).
    ``replay(max_frames=24, interval=400)`` replays the recorded points (the Replay contract)."""

    replay_hint = "train with dqn(..., callback=monitor.log) first"

    def __init__(self, random_value: float | None = None, best_value: float | None = None,
                 redraw_every: int = 1):
        self.random_value, self.best_value = random_value, best_value
        self.redraw_every = max(1, redraw_every)
        self.runs: dict[str, dict] = {}
        self.events: list[tuple[str, int]] = []
        self._current = None
        self.fig = self.live = None

    def start(self, name: str):
        self.runs[name] = {k: [] for k in ("env_steps", "value", "td_loss", "q_mean")}
        self._restart(name)

    def log(self, hist: dict):
        if self._current is None:
            raise RuntimeError("call monitor.start(name) before training")
        run = self.runs[self._current]
        for key in run:
            run[key].append(hist[key][-1])
        self._mark(len(run["env_steps"]))
        if len(run["env_steps"]) % self.redraw_every == 0:
            self.draw(len(self.events) - 1)
            self.show_live()

    def draw(self, k: int):
        """Every run as it stood after recorded point ``k``."""
        import matplotlib.pyplot as plt

        if self.fig is None:
            self.fig, self.axes = plt.subplots(1, 3, figsize=(11, 3.1), dpi=80)
        seen = self.seen(k)
        for ax, key, label in zip(self.axes, ("value", "td_loss", "q_mean"),
                                  ("greedy policy: exact mean return", "TD loss (Huber)",
                                   "mean max-Q over start cells")):
            ax.clear()
            for i, (name, n) in enumerate(seen.items()):
                run = self.runs[name]
                ax.plot(run["env_steps"][:n], run[key][:n], "-", color=f"C{i}", label=name, lw=1.2)
            ax.set_xlabel("environment steps")
            ax.set_title(label, fontsize=9)
        for ax in (self.axes[0], self.axes[2]):
            if self.best_value is not None:
                ax.axhline(self.best_value, color="tab:green", ls=":", lw=1, label="optimal (value iteration)")
        if self.random_value is not None:
            self.axes[0].axhline(self.random_value, color="tab:red", ls="--", lw=1, label="random policy")
        if any(v > 0 for name, n in seen.items() for v in self.runs[name]["td_loss"][:n]):
            self.axes[1].set_yscale("log")
        self.axes[0].legend(fontsize=7, loc="lower right")
        self.fig.tight_layout()


class QMapExplorer(Explorer):
    """The greedy policy (arrows) and max-Q (colour) of a DQN run at recorded training point ``point``
    (left), next to the exact optimum from value iteration (right). ``player("point", range(n))`` steps
    through training for the static site."""

    defaults = dict(point=0)
    layout = dict(ncols=2, figsize=(7.5, 3.6))
    interval = 600

    def __init__(self, history: dict, tables: Tables, q_star: torch.Tensor, **settings):
        if not history.get("q"):
            raise ValueError("history has no recorded Q tables: pass the dict dqn() returned")
        if q_star.shape != history["q"][0].shape:
            raise ValueError(f"q_star must be {tuple(history['q'][0].shape)}, got {tuple(q_star.shape)}")
        self.history, self.tables, self.q_star = history, tables, q_star
        super().__init__(**settings)

    def _validate(self, s, changed):
        n = len(self.history["q"])
        if not 0 <= s["point"] < n:
            raise ValueError(f"point must be in 0..{n - 1} (recorded points), got {s['point']}")

    def _controls(self):
        import ipywidgets as w
        return {"point": w.IntSlider(min=0, max=len(self.history["q"]) - 1, description="point")}

    def draw(self, **override) -> dict:
        """Draw the recorded point; returns the step, the greedy value and the share of start cells whose
        greedy action is optimal (one of the argmax actions of Q*)."""
        s = self.resolve(**override)
        self.figure()
        k, h = s["point"], self.history
        q = h["q"][k]
        best = self.q_star.max(1, keepdim=True).values
        optimal = (self.q_star.gather(1, q.argmax(1, keepdim=True)) >= best - 1e-9).squeeze(1)
        agree = float(optimal[self.tables.starts].double().mean())
        draw_qmap(self.axes[0], q, self.tables, f"DQN after {h['env_steps'][k]} env steps: value "
                  f"{h['value'][k]:.3f}\noptimal action in {agree:.0%} of cells")
        draw_qmap(self.axes[1], self.q_star, self.tables, "Q* (value iteration)")
        self.fig.tight_layout()
        return {"step": h["step"][k], "value": h["value"][k], "agree": agree}

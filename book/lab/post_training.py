"""The post_training chapter's plumbing: a generated task whose good answers a rule can check
(``next c`` -> ``d !``, ``prev c`` -> ``b !``), its chat template, the rule-based :func:`judge`, the
pretraining text, the instruction and preference data, a linear bag-of-features reward model (with the
flaw the chapter exploits: it counts tokens), batched sampling, the training loops of each stage, and
:class:`RLMonitor`, the live view of a policy-gradient run (reward, KL, loss) with a replay.

The objectives themselves are in :mod:`book.nn.preference`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from book.nn.gpt import GPT, GPTConfig
from book.nn.preference import (IGNORE, bradley_terry_loss, dpo_loss, masked_labels, reinforce_kl_loss,
                                sequence_logprob, sft_loss)
from book.ui.explorer import RunsReplay

__all__ = ["LETTERS", "TOKENS", "STOI", "PROMPT_LEN", "MAX_ANSWER", "all_prompts", "split_prompts",
           "correct_letter", "chat", "decode", "judge", "pretrain_stream", "instruction_data",
           "preference_pairs", "features", "RewardModel", "train_reward_model", "new_policy", "pretrain",
           "sft", "sample", "answer_labels", "answer_logprob", "reinforce", "dpo", "evaluate_policy",
           "random_policy", "RLMonitor"]

LETTERS = "abcdefghijklmnop"
TOKENS = list(LETTERS) + ["next", "prev", "!", ".", "<user>", "<assistant>", "<end>"]
STOI = {t: i for i, t in enumerate(TOKENS)}
USER, ASSISTANT, END, BANG, DOT = (STOI[t] for t in ("<user>", "<assistant>", "<end>", "!", "."))
PROMPT_LEN = 4          # <user> cmd letter <assistant>
MAX_ANSWER = 6          # tokens a policy may write (including <end>)


def all_prompts() -> list[tuple[str, str]]:
    """Every (command, letter) prompt of the task: 2 x 16."""
    return [(c, x) for c in ("next", "prev") for x in LETTERS]


def split_prompts(seed: int = 0, n_val: int = 6, n_test: int = 6) -> dict[str, list]:
    """Train / validation / test prompts, disjoint, shuffled by ``seed``."""
    p = all_prompts()
    order = torch.randperm(len(p), generator=torch.Generator().manual_seed(seed)).tolist()
    p = [p[i] for i in order]
    return {"train": p[n_val + n_test:], "val": p[:n_val], "test": p[n_val:n_val + n_test]}


def correct_letter(cmd: str, x: str) -> str:
    step = 1 if cmd == "next" else -1
    return LETTERS[(LETTERS.index(x) + step) % len(LETTERS)]


def chat(cmd: str, x: str, answer: list[str] | None = None) -> list[int]:
    """The chat template: ``<user> cmd letter <assistant>`` then the answer's tokens and ``<end>``."""
    ids = [USER, STOI[cmd], STOI[x], ASSISTANT]
    if answer is not None:
        ids += [STOI[t] for t in answer] + [END]
    return ids


def decode(ids) -> list[str]:
    """Token ids -> tokens, stopping after the first ``<end>``."""
    out = []
    for i in ids:
        out.append(TOKENS[int(i)])
        if int(i) == END:
            break
    return out


def judge(cmd: str, x: str, answer_ids) -> float:
    """The rule-based judge: 1 for exactly ``<right letter> ! <end>``, 0.5 for the right letter with any
    other ending, 0 otherwise."""
    a = decode(answer_ids)
    if not a or a[0] != correct_letter(cmd, x):
        return 0.0
    return 1.0 if a[1:] == ["!", "<end>"] else 0.5


def pretrain_stream(n_phrases: int, g: torch.Generator) -> torch.Tensor:
    """Generated 'web text': phrases ``next c d .`` / ``prev d c .``, runs of the alphabet, and
    dialogues in the chat markers answered plainly (``<user> next c <assistant> d .``, no ``<end>``):
    the base model learns the letters' order and half the template, not when to stop or the style."""
    out = []
    for _ in range(n_phrases):
        i = int(torch.randint(len(LETTERS), (1,), generator=g))
        kind = int(torch.randint(4, (1,), generator=g))
        if kind < 2:
            cmd = ("next", "prev")[kind]
            out += [STOI[cmd], STOI[LETTERS[i]], STOI[correct_letter(cmd, LETTERS[i])], DOT]
        elif kind == 2:   # a dialogue seen on the web: the markers, a plain answer, no <end>
            cmd = ("next", "prev")[int(torch.randint(2, (1,), generator=g))]
            out += chat(cmd, LETTERS[i])[:PROMPT_LEN] + [STOI[correct_letter(cmd, LETTERS[i])], DOT]
        else:
            n = int(torch.randint(3, 7, (1,), generator=g))
            out += [STOI[LETTERS[(i + k) % len(LETTERS)]] for k in range(n)] + [DOT]
    return torch.tensor(out)


def instruction_data(prompts, n: int, g: torch.Generator, polite: float = 0.5):
    """SFT demonstrations: the right letter, then ``!`` (with probability ``polite``) or ``.``.
    -> (ids (n, PROMPT_LEN + 3), labels masked on the prompt)."""
    rows = []
    for k in torch.randint(len(prompts), (n,), generator=g).tolist():
        cmd, x = prompts[k]
        end = "!" if float(torch.rand(1, generator=g)) < polite else "."
        rows.append(chat(cmd, x, [correct_letter(cmd, x), end]))
    ids = torch.tensor(rows)
    return ids, masked_labels(ids, PROMPT_LEN)


def _candidate(cmd, x, g):
    """A candidate answer: the right or a wrong letter, ending with '!' or '.'."""
    right = correct_letter(cmd, x)
    if float(torch.rand(1, generator=g)) < 0.5:
        letter = right
    else:
        letter = LETTERS[int(torch.randint(len(LETTERS), (1,), generator=g))]
    return [letter, "!" if float(torch.rand(1, generator=g)) < 0.5 else "."]


def preference_pairs(prompts, n: int, g: torch.Generator) -> list[tuple]:
    """(cmd, x, chosen, rejected) pairs labelled by the rule (a right letter beats a wrong one; at the
    same correctness, '!' beats '.'); pairs the rule cannot order are drawn again."""
    pairs = []
    while len(pairs) < n:
        cmd, x = prompts[int(torch.randint(len(prompts), (1,), generator=g))]
        a, b = _candidate(cmd, x, g), _candidate(cmd, x, g)
        sa, sb = (judge(cmd, x, [STOI[t] for t in y] + [END]) for y in (a, b))
        if sa != sb:
            pairs.append((cmd, x, a, b) if sa > sb else (cmd, x, b, a))
    return pairs


N_FEATURES = len(TOKENS) + 2 * len(LETTERS)


def features(cmd: str, x: str, answer_ids) -> torch.Tensor:
    """The reward model's input: how often each token occurs in the answer (before ``<end>``) -- a bag
    of words -- and a one-hot of (command, offset of the answer's first letter from the prompt's)."""
    phi = torch.zeros(N_FEATURES)
    a = [int(i) for i in answer_ids]
    if END in a:
        a = a[:a.index(END)]
    for i in a:
        phi[i] += 1
    if a and a[0] < len(LETTERS):
        off = (a[0] - LETTERS.index(x)) % len(LETTERS)
        phi[len(TOKENS) + (0 if cmd == "next" else len(LETTERS)) + off] = 1
    return phi


class RewardModel(torch.nn.Module):
    """r(x, y) = w . features(x, y) + b: linear, so a reader can read what it learned."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(N_FEATURES, 1)

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        return self.w(phi)[..., 0]

    def score(self, prompts, answer_ids) -> torch.Tensor:
        """Rewards of answers (B, L) to prompts [(cmd, x)] * B. -> (B,)"""
        with torch.no_grad():
            return self(torch.stack([features(c, x, a) for (c, x), a in zip(prompts, answer_ids)]))


def pair_features(pairs):
    phi = lambda c, x, y: features(c, x, [STOI[t] for t in y])   # noqa: E731
    return (torch.stack([phi(c, x, w) for c, x, w, _ in pairs]),
            torch.stack([phi(c, x, lo) for c, x, _, lo in pairs]))


def train_reward_model(pairs, *, steps: int, lr: float, weight_decay: float, seed: int) -> RewardModel:
    """Fit the reward model with the Bradley-Terry loss (full batch, AdamW)."""
    torch.manual_seed(seed)
    rm = RewardModel()
    fw, fl = pair_features(pairs)
    opt = torch.optim.AdamW(rm.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = bradley_terry_loss(rm(fw), rm(fl))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return rm


def pair_accuracy(rm: RewardModel, pairs) -> float:
    """Fraction of pairs the reward model orders as the labeller did."""
    fw, fl = pair_features(pairs)
    with torch.no_grad():
        return float((rm(fw) > rm(fl)).float().mean())


__all__ += ["pair_features", "pair_accuracy"]


@dataclass
class PolicyConfig:
    n_embd: int = 48
    n_layer: int = 2
    n_head: int = 4
    block: int = 16


def new_policy(pc: PolicyConfig, seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=len(TOKENS), block_size=pc.block, n_layer=pc.n_layer,
                         n_head=pc.n_head, n_embd=pc.n_embd))


def pretrain(model: GPT, stream: torch.Tensor, *, steps: int, batch: int, lr: float, seed: int) -> list:
    """Next-token training on windows of the generated text. -> losses"""
    g = torch.Generator().manual_seed(seed)
    T = model.cfg.block_size
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    losses = []
    for _ in range(steps):
        start = torch.randint(len(stream) - T - 1, (batch,), generator=g)
        xb = torch.stack([stream[s:s + T + 1] for s in start.tolist()])
        logits = model(xb[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), xb[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def sft(model: GPT, ids: torch.Tensor, labels: torch.Tensor, *, steps: int, batch: int, lr: float,
        seed: int) -> list:
    """Supervised fine-tuning with the loss on the answer tokens only. -> losses"""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        k = torch.randint(len(ids), (batch,), generator=g)
        loss = sft_loss(model(ids[k]), labels[k])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def prompt_ids(prompts) -> torch.Tensor:
    return torch.tensor([chat(c, x) for c, x in prompts])


__all__ += ["PolicyConfig", "prompt_ids"]


@torch.no_grad()
def sample(model, prompts, g: torch.Generator, greedy: bool = False) -> torch.Tensor:
    """Answers (B, MAX_ANSWER) to prompts, sampled token by token at temperature 1 (or greedy);
    after ``<end>`` the rest is padding (``<end>`` again). ``model`` may be ``random_policy``."""
    ids = prompt_ids(prompts)
    done = torch.zeros(len(prompts), dtype=torch.bool)
    was = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    for _ in range(MAX_ANSWER):
        logits = model(ids)[:, -1]
        nxt = logits.argmax(-1) if greedy else torch.multinomial(logits.softmax(-1), 1, generator=g)[:, 0]
        nxt = torch.where(done, torch.full_like(nxt, END), nxt)
        done |= nxt == END
        ids = torch.cat([ids, nxt[:, None]], 1)
    if hasattr(model, "train"):
        model.train(was)
    return ids[:, PROMPT_LEN:]


def random_policy(ids: torch.Tensor) -> torch.Tensor:
    """The trivial policy: every token equally likely. Same call as a model: ids (B, T) -> logits."""
    return torch.zeros(*ids.shape, len(TOKENS))


def answer_labels(prompts, answers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Full sequences and labels that count the answer's tokens up to and including its first ``<end>``."""
    ids = torch.cat([prompt_ids(prompts), answers], 1)
    labels = masked_labels(ids, PROMPT_LEN)
    after_end = (answers == END).long().cumsum(1) - (answers == END).long() > 0   # past the first <end>
    labels[:, PROMPT_LEN - 1:-1][after_end] = IGNORE
    return ids, labels


def answer_logprob(model, prompts, answers) -> torch.Tensor:
    """log pi(answer | prompt) under ``model``. -> (B,)"""
    ids, labels = answer_labels(prompts, answers)
    return sequence_logprob(model(ids), labels)


def reinforce(policy: GPT, ref: GPT, rm: RewardModel, prompts, *, beta: float, steps: int, batch: int,
              lr: float, seed: int, log_every: int, monitor=None, name: str = "") -> dict:
    """Policy-gradient training of ``policy`` on ``rm``'s reward with the KL penalty ``beta`` towards the
    frozen ``ref``. -> history of mean reward, KL (a sampled estimate of KL(pi || ref)) and loss"""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    hist = {"step": [], "reward": [], "kl": [], "loss": []}
    if monitor is not None:
        monitor.start(name)
    for step in range(1, steps + 1):
        batch_prompts = [prompts[i] for i in torch.randint(len(prompts), (batch,), generator=g).tolist()]
        answers = sample(policy, batch_prompts, g)
        r = rm.score(batch_prompts, answers)
        logp = answer_logprob(policy, batch_prompts, answers)
        with torch.no_grad():
            logp_ref = answer_logprob(ref, batch_prompts, answers)
        loss, _ = reinforce_kl_loss(logp, logp_ref, r, beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % log_every == 0 or step == steps:
            hist["step"].append(step)
            hist["reward"].append(r.mean().item())
            hist["kl"].append((logp.detach() - logp_ref).mean().item())
            hist["loss"].append(loss.item())
            if monitor is not None:
                monitor.log(step, steps, hist)
    return hist


def dpo(policy: GPT, ref: GPT, pairs, *, beta: float, steps: int, batch: int, lr: float, seed: int,
        monitor=None, rm: RewardModel | None = None, log_every: int = 10, log_batch: int = 64,
        name: str = "DPO") -> list:
    """Direct preference optimisation of ``policy`` (from ``ref``) on preference pairs. -> losses

    With a ``monitor`` (an :class:`RLMonitor`) and a reward model ``rm``, every ``log_every`` steps it
    samples ``log_batch`` answers to the pairs' prompts (from a generator of its own, so training is the
    same with or without it) and records their mean reward-model score and sampled KL from ``ref`` beside
    the DPO loss: the quantities the REINFORCE runs record, although DPO itself never calls ``rm``."""
    if monitor is not None and rm is None:
        raise ValueError("dpo(monitor=...) draws the reward-model score too: pass rm=")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    enc = lambda ys: torch.tensor([[STOI[t] for t in y] + [END] for y in ys])   # noqa: E731
    prompts = [(c, x) for c, x, _, _ in pairs]
    chosen, rejected = enc([p[2] for p in pairs]), enc([p[3] for p in pairs])
    with torch.no_grad():
        ref_c = answer_logprob(ref, prompts, chosen)
        ref_r = answer_logprob(ref, prompts, rejected)
    losses = []
    hist = {"step": [], "reward": [], "kl": [], "loss": []}
    g_log = torch.Generator().manual_seed(seed + 10_000)
    if monitor is not None:
        monitor.start(name)
    for step in range(1, steps + 1):
        k = torch.randint(len(pairs), (batch,), generator=g)
        pk = [prompts[i] for i in k.tolist()]
        loss = dpo_loss(answer_logprob(policy, pk, chosen[k]), answer_logprob(policy, pk, rejected[k]),
                        ref_c[k], ref_r[k], beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if monitor is not None and (step % log_every == 0 or step == steps):
            with torch.no_grad():
                lp = [prompts[i] for i in torch.randint(len(prompts), (log_batch,), generator=g_log).tolist()]
                answers = sample(policy, lp, g_log)
                kl = answer_logprob(policy, lp, answers) - answer_logprob(ref, lp, answers)
            for key, v in (("step", step), ("reward", rm.score(lp, answers).mean().item()),
                           ("kl", kl.mean().item()), ("loss", loss.item())):
                hist[key].append(v)
            monitor.log(step, steps, hist)
    return losses


@torch.no_grad()
def evaluate_policy(model, prompts, *, n: int, seed: int, rm: RewardModel | None = None,
                    base=None, ref=None) -> dict:
    """Sample ``n`` answers per prompt and score them: the judge's mean score, the reward model's mean,
    the answers' mean length, the fraction whose first letter is right (``right``) and whose second token
    is ``!`` (``polite``), and sampled KL estimates from ``base`` and ``ref`` when given. The per-answer
    judge scores are kept (``scores``) for win rates against another policy on the same prompts."""
    g = torch.Generator().manual_seed(seed)
    ps = [p for p in prompts for _ in range(n)]
    answers = sample(model, ps, g)
    scores = torch.tensor([judge(c, x, a) for (c, x), a in zip(ps, answers)])
    words = [decode(a) for a in answers]
    right = [bool(w) and w[0] == correct_letter(c, x) for (c, x), w in zip(ps, words)]
    out = {"judge": scores.mean().item(), "scores": scores,
           "length": torch.tensor([len(w) for w in words]).float().mean().item(),
           "right": sum(right) / len(right),                              # first letter right
           "polite": sum(len(w) > 1 and w[1] == "!" for w in words) / len(words)}   # then '!'
    if rm is not None:
        out["reward"] = rm.score(ps, answers).mean().item()
    logp = answer_logprob(model, ps, answers)
    for key, other in (("kl_base", base), ("kl_ref", ref)):
        if other is not None:
            out[key] = (logp - answer_logprob(other, ps, answers)).mean().item()
    return out


def win_rate(scores: torch.Tensor, against: torch.Tensor) -> float:
    """P(judge prefers the first policy's answer) + half the ties, answer by answer on the same prompts."""
    return ((scores > against).float() + 0.5 * (scores == against).float()).mean().item()


__all__ += ["win_rate"]


class RLMonitor(RunsReplay):
    """Live view of post-training runs (:func:`reinforce`, :func:`dpo`): mean reward-model score, KL from
    the reference and the run's own loss against the step, one line per run (``start(name)`` before each).
    ``replay(max_frames=24, interval=400)`` replays the recorded points (the Replay contract)."""

    replay_hint = "train with reinforce(..., monitor=this monitor) first"

    def __init__(self):
        self.runs: dict[str, dict] = {}
        self.events: list[tuple[str, int]] = []
        self._current = None
        self.fig = self.live = None

    def start(self, name: str):
        self.runs[name] = {"step": [], "reward": [], "kl": [], "loss": []}
        self._restart(name)

    def log(self, step: int, total: int, hist: dict):
        run = self.runs[self._current]
        for key in run:
            run[key].append(hist[key][-1])
        self._mark(len(run["step"]))
        if step == total:                      # redraw once per run: cheap
            self.draw(len(self.events) - 1)
            self.show_live()

    def draw(self, k: int):
        """Every run as it stood after recorded point ``k``."""
        import matplotlib.pyplot as plt

        if self.fig is None:
            self.fig, self.axes = plt.subplots(1, 3, figsize=(10, 3.2), dpi=80)
        seen = self.seen(k)
        for ax, key, label in zip(self.axes, ("reward", "kl", "loss"),
                                  ("reward-model score", "KL(policy || SFT), nats", "loss (each run's own)")):
            ax.clear()
            for i, (name, n) in enumerate(seen.items()):
                ax.plot(self.runs[name]["step"][:n], self.runs[name][key][:n], "-", color=f"C{i}", label=name)
            ax.set(xlabel="step", title=label)
        self.axes[0].legend(fontsize=7)
        self.fig.tight_layout()

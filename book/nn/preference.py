"""The objectives of post-training, written out: the masked supervised fine-tuning loss, the
Bradley-Terry loss of a reward model, the KL-penalised REINFORCE objective and the DPO loss, plus the
closed-form optimum of the KL-regularised objective that DPO starts from.

Chapter: ``post_training`` (each is checked there, and in tests/chapters/test_post_training.py, against
PyTorch's cross-entropy, autograd, or its derivation on a small discrete case).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100   # the label PyTorch's cross_entropy skips (its default ignore_index)


def masked_labels(ids: torch.Tensor, prompt_len: torch.Tensor | int) -> torch.Tensor:
    """Next-token labels for ids (B, T) with every position that predicts a prompt token set to IGNORE.

    Position t predicts token t + 1; a label counts only when token t + 1 belongs to the answer
    (index >= prompt_len). The last position predicts nothing. -> (B, T) long."""
    B, T = ids.shape
    labels = torch.full_like(ids, IGNORE)
    labels[:, :-1] = ids[:, 1:]
    start = torch.as_tensor(prompt_len, device=ids.device).reshape(-1, 1).expand(B, 1)
    target_pos = torch.arange(1, T + 1, device=ids.device)[None, :]          # position of the target
    labels[target_pos < start] = IGNORE
    return labels


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled (answer) tokens only: logits (B, T, V), labels (B, T)."""
    keep = labels != IGNORE
    if not keep.any():
        raise ValueError("no answer token to learn from: every label is IGNORE")
    logp = logits.log_softmax(-1)
    picked = logp.gather(-1, labels.clamp_min(0)[..., None])[..., 0]         # (B, T)
    return -(picked * keep).sum() / keep.sum()


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log pi(answer | prompt) per row: the sum of the labelled tokens' log-probabilities. -> (B,)"""
    keep = labels != IGNORE
    logp = logits.log_softmax(-1).gather(-1, labels.clamp_min(0)[..., None])[..., 0]
    return (logp * keep).sum(-1)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """-log P(chosen beats rejected) with P = sigmoid(r_chosen - r_rejected), averaged over pairs.

    Its gradient with respect to r_chosen is -sigmoid(r_rejected - r_chosen) / n: a pair the model
    already ranks right by a wide margin teaches almost nothing."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def kl_regularised_optimum(logp_ref: torch.Tensor, reward: torch.Tensor, beta: float) -> torch.Tensor:
    """log pi*(y) of the policy maximising E_pi[r] - beta KL(pi || pi_ref) over a finite set of answers:
    pi*(y) = pi_ref(y) exp(r(y) / beta) / Z (last dimension = the answers)."""
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    return (logp_ref + reward / beta).log_softmax(-1)


def kl_regularised_objective(logp: torch.Tensor, logp_ref: torch.Tensor, reward: torch.Tensor,
                             beta: float) -> torch.Tensor:
    """E_pi[r] - beta KL(pi || pi_ref), exactly, for policies given as log-probabilities over the answers."""
    p = logp.exp()
    return (p * reward).sum(-1) - beta * (p * (logp - logp_ref)).sum(-1)


def reinforce_kl_loss(logp: torch.Tensor, logp_ref: torch.Tensor, reward: torch.Tensor,
                      beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE with a baseline on the KL-penalised reward, for sampled answers.

    logp: log pi(y|x) of each sampled answer (B,), with gradient; logp_ref: the same under the frozen
    reference (B,); reward: r(x, y) (B,). The shaped reward R = r - beta (log pi - log pi_ref) is a
    one-sample estimate of the objective; the baseline is the batch mean of R. For a batch of B answers
    drawn from pi, the expected gradient of the loss -mean((R - b) log pi) is exactly -(1 - 1/B) times
    the gradient of E[r] - beta KL (the KL term's own score-function part has mean zero): the batch mean
    contains each answer's own R, which shrinks the expected step by 1/B without turning it.
    -> (loss, R detached)"""
    shaped = (reward - beta * (logp.detach() - logp_ref)).detach()
    advantage = shaped - shaped.mean()
    return -(advantage * logp).mean(), shaped


def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """Direct preference optimisation: the Bradley-Terry loss with the implicit reward
    r_hat(x, y) = beta (log pi(y|x) - log pi_ref(y|x)) in place of a learned reward model."""
    return bradley_terry_loss(implicit_reward(logp_chosen, ref_chosen, beta),
                              implicit_reward(logp_rejected, ref_rejected, beta))


def implicit_reward(logp: torch.Tensor, logp_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """beta log(pi / pi_ref): the reward a policy is optimal for, up to a per-prompt constant."""
    return beta * (logp - logp_ref)

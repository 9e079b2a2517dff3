"""Self-checks for the chapter "Language tasks: answering, classifying, translating"."""
from __future__ import annotations

import torch

from book.check.core import Case, _g, run_cases
from book.lab.language_tasks import bleu, squad_f1

__all__ = ["token_f1", "padding_bias", "bleu_one_wrong", "f1_extra_words"]


def token_f1(fn) -> None:
    """``fn(prediction, truth)`` -> SQuAD's token F1 of one prediction against one true answer."""
    pairs = [("hen", "a red hen"), ("The Red Hen!", "a red hen"), ("hen hen", "a hen"),
             ("a pig", "a red hen"), ("", "")]
    labels = ["part of the answer", "normalised: an exact match", "a repeated word counts as often as in the truth",
              "nothing shared", "both empty"]
    cases = [Case(p, squad_f1(*p), label=lab) for p, lab in zip(pairs, labels)]
    extra = [("red red hen", "red hen hen"), ("the fox, the cow", "a fox and a cow"), ("tom", ""),
             ("x y z w", "w z")]
    cases += [Case(p, squad_f1(*p), public=False, label=f"{p[0]!r} vs {p[1]!r}") for p in extra]
    run_cases("token_f1", lambda p, t: float(fn(p, t)), cases,
              hint="normalise, split, Counter(p) & Counter(t); F1 = 2PR / (P + R)")


def padding_bias(fn) -> None:
    """``fn(mask (B, T))`` -> additive bias (B, 1, 1, T): 0 for real tokens, float32 min for padding."""
    from book.check._reference import _padding_bias_ref

    m = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    cases = [Case((m,), _padding_bias_ref(m), label="two texts, padded to 4")]
    r = (torch.rand(5, 9, generator=_g(71)) < 0.7).long()
    cases.append(Case((r,), _padding_bias_ref(r), public=False, label="random 5 x 9 mask"))
    cases.append(Case((torch.ones(1, 3, dtype=torch.long),), _padding_bias_ref(torch.ones(1, 3)),
                      public=False, label="no padding at all"))

    def compare(got, expected):
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            return False, f"shape {tuple(getattr(got, 'shape', ()))}, expected {tuple(expected.shape)}"
        return bool(torch.equal(got.float(), expected)), "values differ"
    run_cases("padding_bias", fn, cases, compare,
              hint="(1 - mask) * torch.finfo(torch.float32).min, with two new axes after the batch axis")


def _one_wrong(L: int) -> float:
    ref = [f"w{i}" for i in range(L)]
    hyp = ref.copy()
    hyp[L // 2] = "zz"
    return bleu(" ".join(hyp), " ".join(ref))


def bleu_one_wrong(fn) -> None:
    """``fn(L)`` -> BLEU of an L-word hypothesis with one wrong inner word (>= 3 words on each side)."""
    cases = [Case((10,), _one_wrong(10), label="L = 10"), Case((40,), _one_wrong(40), label="L = 40"),
             Case((8,), _one_wrong(8), public=False, label="L = 8"),
             Case((23,), _one_wrong(23), public=False, label="L = 23")]
    run_cases("bleu_one_wrong", lambda L: float(fn(L)), cases,
              hint="the wrong word spoils n of the L - n + 1 n-grams; the brevity penalty is 1")


def _extra(k: int, m: int) -> float:
    truth = " ".join(f"t{i}" for i in range(k))
    return squad_f1(truth + "".join(f" x{i}" for i in range(m)), truth)


def f1_extra_words(fn) -> None:
    """``fn(k, m)`` -> token F1 of a prediction = the k-word answer plus m other words."""
    cases = [Case((1, 1), _extra(1, 1), label="one word, one extra"),
             Case((2, 1), _extra(2, 1), label="two words, one extra"),
             Case((3, 0), _extra(3, 0), public=False, label="no extra words"),
             Case((5, 4), _extra(5, 4), public=False, label="k = 5, m = 4")]
    run_cases("f1_extra_words", lambda k, m: float(fn(k, m)), cases,
              hint="precision k / (k + m), recall 1")

"""Self-checks for the chapter "Self-supervised pretraining and transfer learning"."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from book.check.core import Case, run_cases

__all__ = ["bert_corrupt", "causal_pairs", "masked_ce", "probe_params", "leaked_fraction", "unchanged_share"]


def bert_corrupt(fn) -> None:
    """``fn(x, chosen, r, mask_id, random_ids)`` -> corrupted ids (80 % mask, 10 % random, 10 % unchanged)."""
    from book.check._reference import _corrupt_ref  # hidden from graded code
    x = torch.tensor([5, 6, 7, 8, 9])
    chosen = torch.tensor([True, True, True, False, True])
    r = torch.tensor([0.1, 0.85, 0.95, 0.1, 0.8])
    rnd = torch.tensor([1, 2, 3, 4, 0])
    cases = [Case((x, chosen, r, 99, rnd), torch.tensor([99, 2, 7, 8, 0]),
                  label="r=0.1 -> mask, 0.85 -> random, 0.95 -> keep, not chosen -> keep, r=0.8 -> random")]
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        x = torch.randint(0, 50, (4, 16), generator=g)
        args = (x, torch.rand(4, 16, generator=g) < 0.3, torch.rand(4, 16, generator=g), 50,
                torch.randint(0, 50, (4, 16), generator=g))
        cases.append(Case(args, _corrupt_ref(*args), public=False, label="random batch (4, 16)"))
    run_cases("bert_corrupt", lambda *a: fn(*(t.clone() if isinstance(t, torch.Tensor) else t for t in a)), cases,
              hint="start from a copy of x; only chosen positions change; the boundaries are r < 0.8 and r < 0.9")


def causal_pairs(fn) -> None:
    """``fn(ids)`` -> ``(inputs, targets)``: targets are the inputs shifted by one."""
    ids = torch.tensor([3, 1, 4, 1, 5])
    cases = [Case((ids,), (torch.tensor([3, 1, 4, 1]), torch.tensor([1, 4, 1, 5])), label="[3, 1, 4, 1, 5]")]
    r = torch.randint(0, 60, (33,), generator=torch.Generator().manual_seed(0))
    cases.append(Case((r,), (r[:-1], r[1:]), public=False, label="33 random ids"))
    run_cases("causal_pairs", fn, cases, hint="inputs drop the last token, targets drop the first")


def masked_ce(fn) -> None:
    """``fn(logits, labels)`` -> mean cross-entropy over positions whose label is not -100."""
    g = torch.Generator().manual_seed(4)
    cases = []
    logits = torch.zeros(1, 3, 4)
    labels = torch.tensor([[2, -100, -100]])
    cases.append(Case((logits, labels), torch.tensor(torch.log(torch.tensor(4.0)).item()),
                      label="uniform logits over 4 classes, one chosen position: log 4"))
    for _ in range(3):
        lg = torch.randn(2, 7, 10, generator=g)
        lb = torch.randint(0, 10, (2, 7), generator=g)
        lb[torch.rand(2, 7, generator=g) < 0.6] = -100
        lb[0, 0] = 3
        cases.append(Case((lg, lb), F.cross_entropy(lg.reshape(-1, 10), lb.reshape(-1), ignore_index=-100),
                          public=False, label="random (2, 7, 10)"))
    run_cases("masked_ce", fn, cases, hint="select logits[labels != -100] (shape (N, V)) and the matching labels")


def probe_params(fn) -> None:
    """``fn(n_features, n_classes)`` -> trainable parameters of a linear head from F features to K classes."""
    cases = [Case((131, 2), 264, label="F=131 features (this chapter's), K=2 classes"),
             Case((2, 2), 6, label="F=2, K=2"), Case((128, 6), 774, label="F=128, K=6"),
             Case((768, 1000), 769000, public=False, label="F=768, K=1000")]
    run_cases("probe_params", fn, cases, hint="a weight matrix K x C plus one bias per class")


def leaked_fraction(fn) -> None:
    """``fn(test_starts, block, held)`` -> fraction of windows containing a non-held-out character."""
    from book.check._reference import _leak_ref  # hidden from graded code
    held = torch.tensor([False, True, True, True, False, False])
    cases = [Case((torch.tensor([1, 3]), 2, held), 0.5, label="window 1..2 held out, window 3..4 touches 4"),
             Case((torch.tensor([1]), 3, held), 0.0, label="window 1..3 lies inside the held-out run")]
    g = torch.Generator().manual_seed(5)
    h = torch.rand(500, generator=g) < 0.7
    s = torch.randint(0, 480, (40,), generator=g)
    cases.append(Case((s, 8, h), _leak_ref(s, 8, h), public=False, label="random mask"))
    run_cases("leaked_fraction", fn, cases, hint="index held with starts[:, None] + arange(block), then any over ~")


def unchanged_share(fn) -> None:
    """``fn(vocab_size)`` -> probability that a chosen position's input still equals its target under BERT's
    80/10/10 rule, random tokens drawn uniformly from ``vocab_size`` real tokens."""
    # the derived probability evaluated at each size (deriving it is the exercise)
    cases = [Case((65,), 0.10153846153846154, label="65 characters (this chapter's vocabulary)"),
             Case((2,), 0.15, label="2 tokens"),
             Case((30522,), 0.10000327632527357, public=False, label="BERT's 30,522 WordPiece tokens"),
             Case((1,), 0.2, public=False, label="1 token")]
    run_cases("unchanged_share", lambda v: float(fn(v)), cases,
              hint="two ways to stay the same: left alone, or replaced by a random token that happens to be "
                   "the original one")

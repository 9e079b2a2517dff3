"""Self-checks of the core_concepts chapter's exercises."""
from __future__ import annotations

from torch import nn

from book.check.core import Case, _rel, run_cases
from book.nn.counting import block_params, count_params, mlp_flops

__all__ = ['linear_params', 'mlp_forward_flops', 'conv2d_params', 'transformer_block_params', 'attention_crossover',
           'accuracy_std']


def linear_params(fn) -> None:
    """``fn(n_in, n_out)`` -> parameters of ``nn.Linear(n_in, n_out)`` (with bias)."""
    cases = [Case((n_in, n_out), count_params(nn.Linear(n_in, n_out)), public=i < 2)
             for i, (n_in, n_out) in enumerate([(784, 256), (3, 1), (1, 1), (512, 2048)])]
    run_cases("linear_params", fn, cases, compare=_rel, hint="a weight per (input, output) pair, a bias per output")


def mlp_forward_flops(fn) -> None:
    """``fn(sizes, batch)`` -> forward FLOPs of an MLP with widths ``sizes`` (multiply-add = 2 FLOPs)."""
    cases = [Case(([784, 256, 10], 1), mlp_flops([784, 256, 10], 1)),
             Case(([2, 3], 5), mlp_flops([2, 3], 5)),
             Case(([784, 512, 512, 10], 64), mlp_flops([784, 512, 512, 10], 64), public=False)]
    run_cases("mlp_forward_flops", fn, cases, compare=_rel, hint="each layer: 2·n_in·n_out per example")


def conv2d_params(fn) -> None:
    """``fn(c_in, c_out, k)`` -> parameters of ``nn.Conv2d(c_in, c_out, k)`` (with bias)."""
    cases = [Case((c_in, c_out, k), count_params(nn.Conv2d(c_in, c_out, k)), public=i < 2)
             for i, (c_in, c_out, k) in enumerate([(1, 6, 5), (6, 16, 5), (3, 64, 3), (64, 128, 1)])]
    run_cases("conv2d_params", fn, cases, compare=_rel,
              hint="each of c_out filters has c_in·k·k weights and one bias")


def transformer_block_params(fn) -> None:
    """``fn(d_model, d_ff)`` -> parameters of a ``book.nn.gpt.Block`` with MLP width ``d_ff``."""
    cases = [Case((64, 256), block_params(64, 256)), Case((768, 3072), block_params(768, 3072)),
             Case((8, 8), block_params(8, 8), public=False)]
    run_cases("transformer_block_params", fn, cases, compare=_rel,
              hint="Q, K, V and output projections (4 d² + 4 d), two MLP layers (2·d·d_ff + d_ff + d), "
                   "two LayerNorms (2 d each)")


def attention_crossover(fn) -> None:
    """``fn(d_model, d_ff)`` -> the sequence length T at which the T² (attention) term of a Transformer
    block's forward FLOPs equals the term linear in T (projections and MLP)."""
    from book.check._reference import _crossover_ref as ref  # hidden from graded code
    from book.nn.counting import block_flops
    cases = [Case((64, 256), ref(64, 256), label="the chapter's block: d=64, d_ff=256"),
             Case((768, 3072), ref(768, 3072), label="GPT-2 small: d=768, d_ff=3072"),
             Case((12288, 49152), ref(12288, 49152), public=False), Case((8, 8), ref(8, 8), public=False)]
    for case in cases:      # the answer must split book.nn.counting's count into two equal halves
        d, f = case.args
        t = case.expected
        assert block_flops(d, f, t) == 2 * (2 * t * (4 * d * d + 2 * d * f))
    run_cases("attention_crossover", fn, cases, compare=_rel,
              hint="write the block's FLOPs as a·T + b·T² and solve a·T = b·T² for T > 0")


def accuracy_std(fn) -> None:
    """``fn(acc, m)`` -> standard deviation of the accuracy measured on ``m`` independent examples when
    the true accuracy is ``acc``."""
    from book.check._reference import _acc_std_ref as ref  # hidden from graded code
    cases = [Case((0.5, 100), ref(0.5, 100), label="a coin, 100 examples"),
             Case((0.9, 180), ref(0.9, 180), label="accuracy 0.9 on 180 validation points"),
             Case((0.99, 10_000), ref(0.99, 10_000), public=False), Case((0.3, 7), ref(0.3, 7), public=False)]
    run_cases("accuracy_std", fn, cases, compare=_rel,
              hint="each example is right with probability acc, independently: what distribution does the "
                   "number of right answers follow? A standard deviation, not a variance")

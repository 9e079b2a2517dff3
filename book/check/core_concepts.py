"""Self-checks of the core_concepts chapter's exercises."""
from __future__ import annotations

from torch import nn

from book.check.core import Case, _rel, run_cases
from book.nn.counting import block_params, count_params, mlp_flops

__all__ = ['linear_params', 'mlp_forward_flops', 'conv2d_params', 'transformer_block_params']


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

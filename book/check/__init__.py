"""Exercise self-checks: ``from book import check; check.momentum_step(my_fn)``.

Each chapter's checks live in their own module and are re-exported here.
"""
from .core import Case, CheckFailed, close, raising, results, run_cases, strict  # noqa: F401
from .foundations import (conv2d_params, doubling_months, linear_params, log_slope, mlp_forward_flops,  # noqa: F401
                          training_flops, transformer_block_params, years_until)
from .mathematics import (attention_weights, bce_from_logits, cross_entropy, d_sigmoid, grad_f,  # noqa: F401
                          logsumexp, matmul_backward, numerical_derivative, tanh_backward)
from .mathematics import attention_output, causal_mask, softmax_temperature  # noqa: F401
from .mathematics import conv2d_multi, conv2d_single, conv_output_size, maxpool2x2  # noqa: F401
from .mathematics import batchnorm_forward, clip_by_norm, init_std, warmup_cosine_lr  # noqa: F401
from .mathematics import gru_step, lstm_step, perplexity, rnn_step  # noqa: F401
from .mathematics import gpt_params, sinusoidal_pe, top_k_filter, top_p_filter  # noqa: F401
from .optim import adam_step, max_stable_lr, momentum_step, quadratic_grad  # noqa: F401

# Part V/VI topic modules list their checks in ``__all__``; re-export them here without a hand-kept list.
import importlib as _importlib

for _topic in ("pretraining", "lora", "adversarial", "efficiency", "distributed", "compression", "scaling",
               "applications", "generative", "apps", "tools", "trends"):
    try:
        _mod = _importlib.import_module(f"{__name__}.{_topic}")
    except ModuleNotFoundError as _e:
        if _e.name != f"{__name__}.{_topic}":
            raise
        continue
    for _name in getattr(_mod, "__all__", ()):
        globals()[_name] = getattr(_mod, _name)
del _importlib

"""Exercise self-checks: ``from book import check; check.momentum_step(my_fn)``.

Each chapter's checks live in their own module and are re-exported here.
"""
from .core import Case, CheckFailed, close, raising, results, run_cases, strict  # noqa: F401
from .optim import adam_step, max_stable_lr, momentum_step, quadratic_grad  # noqa: F401

"""Exercise self-checks: ``from book import check; check.momentum_step(my_fn)``.

Each chapter's checks live in ``book/check/<chapter stem>.py`` (the notebook's file name), listed in its
``__all__``, and are re-exported here.
"""
import importlib as _importlib

from book.check.core import Case, CheckFailed, close, raising, results, run_cases, strict  # noqa: F401

# The one way a module's checks are registered: its name here and its ``__all__``. A misspelt name fails
# at import; tests/unit/test_check.py fails if a module of this folder is missing from the tuple.
MODULES = ("history", "core_concepts", "generalisation",
           "losses_activations", "backprop", "gradient_descent", "optimisation", "attention_math",
           "training_practice", "residual_nets", "cnn", "modern_cnn", "rnn", "seq2seq", "transformer_block",
           "gpt", "pretraining", "lora", "adversarial",
           "efficiency", "distributed", "compression", "scaling_laws", "applications", "generative", "gan", "recsys_rl",
           "tools", "trends", "modern_block", "inference", "using_models", "post_training", "retrieval", "dqn",
           "vision_tasks", "evaluation", "language_tasks", "few_shot", "explanations", "pipeline", "graphs",
           "privacy_fairness", "speech")

for _topic in MODULES:
    _mod = _importlib.import_module(f"{__name__}.{_topic}")
    for _name in _mod.__all__:
        if _name in globals():
            raise ImportError(f"check {_name!r} of book.check.{_topic} is already defined by another module")
        globals()[_name] = getattr(_mod, _name)
del _importlib, _topic, _mod, _name

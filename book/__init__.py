"""``book``: the helper package of "From Neurons to Large Models" (从神经元到大模型).

Modules, each small and tested: ``config`` (device, profile, seeds), ``data`` (shipped and synthetic
data), ``train`` (training loop), ``optim`` (scratch optimizers), ``landscapes`` (2-D loss surfaces),
``viz`` (static-friendly plots), ``widgets`` (live dashboard, explorers), ``check`` (exercise checks).
"""
from . import check  # noqa: F401
from .config import Env, pick_device, pick_profile, seed_everything, setup  # noqa: F401
from .data import batches, load_mnist, load_text, make_2d  # noqa: F401
from .train import Callback, History, accuracy, evaluate, fit  # noqa: F401

__version__ = "0.1.0"


def show_source(obj) -> None:
    """Display the source code of a ``book`` function or class, highlighted (so chapters show what they use)."""
    import inspect

    from IPython.display import Markdown, display

    display(Markdown(f"```python\n{inspect.getsource(obj).rstrip()}\n```"))

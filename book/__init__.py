"""``book``: the helper package of "From Neurons to Large Models" (从神经元到大模型).

Layers, each module small, tested, and naming the chapters (``chapters/<stem>.ipynb``) that use it:

* **runtime** -- ``config`` (:func:`~book.config.setup`: device, cpu/gpu profile, seeds, the dry run),
  ``hardware`` (measured throughput), ``data`` (shipped and synthetic data sets; ``data.text``
  character-level text, ``data.augment`` label-preserving augmentation) and ``train``
  (:func:`~book.train.fit` / :func:`~book.train.evaluate`, callbacks);
* **from scratch** -- ``nn``: what the chapters teach, written out to be read (autodiff, losses,
  activations, optimizers, attention, convolution, recurrent cells, GPT, LoRA, quantization, counting
  parameters and FLOPs, shared models), each tested against PyTorch;
* **per chapter** -- ``lab.<chapter>``: a chapter's experiment plumbing (generated data, training runs,
  measurements, its own views), which it uses but does not teach;
* **UI** -- ``ui``: live figures, replay players, explorers and the training dashboard;
* **checks** -- ``check``: the exercise self-checks, one module per chapter (``check.<chapter>``);
* **teacher** -- ``teach``: student versions of a chapter and sandboxed grading (``python -m book.teach``).

The names most chapters need are importable from ``book`` itself (``setup``, ``load_mnist``, ``fit``, ...).
See the API reference appendix for every module.
"""
from . import check  # noqa: F401
from .config import Env, pick_device, pick_profile, seed_everything, setup  # noqa: F401
from .data import batches, load_mnist, load_text, make_2d  # noqa: F401
from .train import Callback, History, accuracy, evaluate, fit  # noqa: F401
from .ui.glued import glue  # noqa: F401

__version__ = "0.2.0"


def show_source(obj) -> None:
    """Display the source code of a ``book`` function or class, highlighted (so chapters show what they use)."""
    import inspect

    from IPython.display import Markdown, display

    display(Markdown(f"```python\n{inspect.getsource(obj).rstrip()}\n```"))

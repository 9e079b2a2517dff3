"""From scratch: the algorithms the chapters teach, written out to be read and tested against PyTorch.

One module per topic, each naming the chapter that teaches it: ``autodiff`` (``backprop``), ``losses`` and
``activations`` (``losses_activations``), ``optim`` (``gradient_descent``), ``attention`` (``attention_math``),
``conv`` (``cnn``), ``rnn`` (``rnn``), ``gpt`` (``gpt``), ``modern`` (``modern_block``),
``lora`` (``lora``), ``quantize`` (``compression``), ``graph`` (``graphs``), ``audio`` (``speech``),
``privacy`` (``privacy_fairness``: per-example gradients, DP-SGD, the RDP accountant),
``counting`` (``core_concepts``) and ``models``, the LeNet and deep MLPs several chapters train (``cnn``,
``training_practice``).
"""

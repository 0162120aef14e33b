"""Optional glue to other toolkits; each submodule imports its toolkit only when it is imported.

- :mod:`advcorrupt.integrations.lightning`: :class:`AdversarialCorruptionCallback` for
  PyTorch Lightning (``pip install "advcorrupt[lightning]"``).
- :mod:`advcorrupt.integrations.albumentations`: :class:`AlbumentationsCorruption`, the
  corruptions as an albumentations ``ImageOnlyTransform``.
- :mod:`advcorrupt.integrations.tensorboard`: the ``advcorrupt train --tensorboard`` writer
  (``pip install "advcorrupt[tensorboard]"``).
"""

__all__: list[str] = []

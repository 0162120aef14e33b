"""Batched, per-sample image corruptions (ImageNet-C definitions) and their registry.

Importing this package registers the 10 built-ins, in the order of ``available()``.
"""

from . import _builtins  # noqa: F401  (registers the built-in corruptions)
from ._registry import CATEGORIES, CorruptionSpec, available, corrupt, get, register, validate_images

__all__ = ["CATEGORIES", "CorruptionSpec", "available", "corrupt", "get", "register", "validate_images"]

"""Infrared small-target detection models behind a timm-style registry.

``create_model(name, **kwargs)`` builds one of ``list_models()``: ``dnanet`` (Li et al., IEEE TIP
2023), ``sfim_dnanet`` (BALISTD, AAAI 2024) and ``acm`` (Dai et al., WACV 2021). All take
``in_channels`` (default 1), accept any H and W, and return logits.
"""

from ._registry import create_model, list_models, register_model
from .acm import ACM
from .dnanet import DNANet

__all__ = ["ACM", "DNANet", "create_model", "list_models", "register_model"]

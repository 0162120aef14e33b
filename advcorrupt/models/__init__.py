"""Infrared small-target detection models behind a timm-style registry.

``create_model(name, **kwargs)`` builds one of ``list_models()``: ``dnanet`` (Li et al., IEEE TIP
2023), ``sfim_dnanet`` (BALISTD, AAAI 2024), ``acm`` (Dai et al., WACV 2021), ``alcnet`` (Dai et
al., TGRS 2021), ``rdian`` (Sun et al., TGRS 2023), ``isnet`` (Zhang et al., CVPR 2022) and
``istdunet`` (Hou et al., GRSL 2022). All take ``in_channels`` (default 1), accept any H and W,
and return logits. ``sfim_acm``, ``sfim_alcnet``, ``sfim_rdian``, ``sfim_isnet`` and
``sfim_istdunet`` are those detectors with SFIM inserted at their default points
(``advcorrupt.layers.insert_sfim``).
"""

from ._registry import create_model, list_models, register_model
from .acm import ACM
from .alcnet import ALCNet
from .dnanet import DNANet
from .isnet import ISNet
from .istdunet import ISTDUNet
from .rdian import RDIAN
from .sfim_zoo import sfim_acm, sfim_alcnet, sfim_isnet, sfim_istdunet, sfim_rdian  # noqa: F401  (registers them)

__all__ = ["ACM", "ALCNet", "DNANet", "ISNet", "ISTDUNet", "RDIAN", "create_model", "list_models", "register_model"]

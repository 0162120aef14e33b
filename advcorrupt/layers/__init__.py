"""Drop-in layers: the SFIM of BALISTD (AAAI 2024, Fig. 2c) and ``insert_sfim``."""

from .insert import SFIMAfter, default_sfim_targets, insert_sfim
from .sfim import SFIM

__all__ = ["SFIM", "SFIMAfter", "default_sfim_targets", "insert_sfim"]

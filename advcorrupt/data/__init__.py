"""Datasets for infrared small-target detection: the standard ISTD layout and synthetic scenes."""

from __future__ import annotations

from .synthetic import SyntheticIRSTD, generate_scene

__all__ = ["SyntheticIRSTD", "generate_scene"]

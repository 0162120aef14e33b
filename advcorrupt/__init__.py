"""advcorrupt: make any PyTorch segmentation model robust to real-world image corruptions.

Implements the bi-level adversarial framework of BALISTD, "Enhancing Infrared Small Target
Detection Robustness with Bi-Level Adversarial Framework" (AAAI 2024): a policy network picks, per
image, the (corruption, severity) that hurts the detector most (REINFORCE, Eq. 3-7) while the
detector trains on clean + corrupted samples, L = L(clean) + lambda * L(corrupted) (Eq. 1, Alg. 1);
plus the paper's spatial-frequency interaction module (SFIM) as a drop-in layer.

Importing the package registers the 10 built-in corruptions and the ISTD models; nothing else
happens at import time.
"""

from . import benchmark, corruptions, data, metrics, models
from .layers import SFIM, insert_sfim
from .losses import SoftIoULoss
from .policy import ActionSpace, PolicyNetwork, Reinforce
from .trainer import AdversarialCorruptionTrainer

__version__ = "0.1.0"

__all__ = [
    "SFIM",
    "ActionSpace",
    "AdversarialCorruptionTrainer",
    "PolicyNetwork",
    "Reinforce",
    "SoftIoULoss",
    "__version__",
    "benchmark",
    "corruptions",
    "data",
    "insert_sfim",
    "metrics",
    "models",
]

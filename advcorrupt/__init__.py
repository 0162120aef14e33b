"""advcorrupt: adversarial corruption training (BALISTD, AAAI 2024) for any PyTorch segmentation model."""

__version__ = "0.1.0"

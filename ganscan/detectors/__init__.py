"""Detectors: the registry, the model zoo (each module registers its architectures on import), loading,
preprocessing, inference, evaluation and training."""

from ganscan.detectors.zoo import cnn, autogan, families, fusion, selfdesc, surprisal, published  # noqa: F401  isort: skip (listing order)

"""GANs ganscan can train and sample: DCGAN, ProGAN, AutoGAN, the generator registry, the trainer and SWD.
Each model module registers itself on import."""

from ganscan.gans import autogan, dcgan, progan  # noqa: F401

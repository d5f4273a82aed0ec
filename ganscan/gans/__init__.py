"""GANs ganscan can train and sample: DCGAN, ProGAN, the generator registry, the trainer and SWD."""

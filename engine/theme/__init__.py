"""Themes and variations: the theme VAE (model, phrases, objective, training), its
held-out figures, its variations measured through the sampler, and ``ostinato theme``."""

"""Measuring models on held-out music, through the sampler that plays: ``ostinato eval``
(one model), ``ostinato quality`` (generation methods compared) and their parts."""

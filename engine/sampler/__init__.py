"""The numba sampler that plays (no torch): the exported weights, the LSTM step, the
runtime's sessions with look-ahead rings and rewind, the critic's drafts at play time and
the theme encoder.  The server and offline generation (``engine.generate``) both compose
through it, so what is evaluated is what plays."""

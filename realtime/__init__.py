"""Ostinato's server: the protocol, the control and OSC transports, sessions and the
commands that change them, the sequencer, the outputs, audio, and the command line.

It imports the composer (``engine``), never the reverse, and never imports torch.
"""

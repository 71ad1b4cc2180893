"""Training the composer (torch): the corpus and dataset, the LSTM and its training loop,
adversarial fine-tuning and the discriminators compared, export, and run folders."""

"""Model surgery: the decoupled transformer, its settings, checkpoints and tokenisation."""

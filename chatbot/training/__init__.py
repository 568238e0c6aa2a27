"""Training: the loop, and the checkpoint format (the only place a model is serialised)."""

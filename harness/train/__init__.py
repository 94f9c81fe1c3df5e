"""Training: the feature bank for frozen encoders and the staged training loop."""

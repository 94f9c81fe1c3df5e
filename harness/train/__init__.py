"""Training: the feature bank for frozen encoders, the staged training loop and its learning-rate schedules."""

"""Pre-training of the embedded default's tiny backbones on the synthetic world (run once, cached)."""

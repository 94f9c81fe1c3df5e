"""Typed run configuration (dataclass schemas) and their registration in Hydra's ConfigStore."""

"""A tabular model run the MLOps way: validated data, gated promotion, drift monitoring."""

__version__ = "0.1.0"

"""Numerical gradients by central differences, and CS231n's relative error (yamlnet.gradcheck's)."""

from yamlnet.gradcheck import numerical_gradient, rel_error  # noqa: F401

"""The end-to-end stack fixture (see stack.py) for the tests in this folder."""
from tests.integration.stack import stack  # noqa: F401  (pytest fixture)

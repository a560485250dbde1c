"""The one error type for bad data on disk."""
from __future__ import annotations


class DataError(ValueError):
    """A data file or one of its entries is missing or malformed. The message names it."""

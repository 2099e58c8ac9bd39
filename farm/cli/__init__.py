"""The ``farm`` command line (``farm render``, ``serve``, ``submit``, ``status``, ``cancel``, ``models``)."""

from farm.cli.main import main

__all__ = ["main"]

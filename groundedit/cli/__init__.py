"""The ``groundedit`` command line (see :mod:`groundedit.cli.main`)."""

from groundedit.cli.main import app, main

__all__ = ["app", "main"]

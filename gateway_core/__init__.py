"""Switchboard's gateway core: everything that runs without a user interface.

This package must never import textual, rich or the console package; CI checks it.
"""

__version__ = "0.1.0"

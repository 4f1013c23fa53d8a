"""The package version (one place; imported by gfsgd/__init__.py and by the run store)."""
__version__ = "0.1.0"

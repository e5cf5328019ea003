"""The version of wmspanel-async; hatch reads it from here when it builds the package."""

__version__ = "0.1.0.dev0"

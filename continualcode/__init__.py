"""continualcode: a terminal coding agent that learns from feedback while it is used."""

__version__ = "0.1.0"

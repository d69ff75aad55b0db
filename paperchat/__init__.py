"""paperchat: paper-grounded question answering with honest citations."""

__version__ = "0.1.0"

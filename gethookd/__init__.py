"""gethookd: a self-hosted webhook reliability gateway."""

__version__ = "0.1.0"

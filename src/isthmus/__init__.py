"""isthmus: tenant virtual networks to the outside world, on plain Linux."""

__version__ = "0.1.0"

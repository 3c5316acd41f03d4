"""The engine's version: part of every rule-set fingerprint."""

__version__ = "0.3.0"

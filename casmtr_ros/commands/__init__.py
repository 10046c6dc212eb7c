"""Subcommands of ``casmtr-vo``: one module each, exposing ``register(subparsers)``."""

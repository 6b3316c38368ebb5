"""Plots: they read logs and models, never train."""

__all__ = []

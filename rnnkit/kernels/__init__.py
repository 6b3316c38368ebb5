"""Kernels that run a cell over a whole sequence; ``dispatch.run`` picks one."""
from rnnkit.kernels.dispatch import KERNELS, run

__all__ = ["KERNELS", "run"]

"""A small convolutional image encoder, written here (torchvision does not import beside
this torch build, and nothing pretrained is available): the L x D grid of feature
vectors that captioning and VQA attend over, and their mean as one image vector."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ImageEncoder"]


class ImageEncoder(nn.Module):
    """Three blocks of conv 3x3 -> batch norm -> ReLU -> 2x2 max pool.

    Args:
        width: channels of the first block; the blocks have ``width``, ``2 width`` and
            ``4 width`` (default 16, so D = 64).
        in_channels: default 3 (RGB).
        coords: append each location's (row, column) in [-1, 1] to its features, so
            attention and the decoder can tell where a feature lies (default True).

    ``forward(images (N, C, S, S)) -> (grid (N, L, D), pooled (N, D))`` with
    L = (S // 8)^2 locations in row-major order and D = 4 width (+ 2 with ``coords``).

    Example::

        >>> grid, pooled = ImageEncoder()(torch.randn(2, 3, 48, 48))   # (2, 36, 66), (2, 66)
    """

    def __init__(self, width=16, in_channels=3, coords=True):
        super().__init__()
        if width < 1:
            raise ValueError(f"ImageEncoder: width must be >= 1, got {width}")
        channels = (in_channels, width, 2 * width, 4 * width)
        blocks = []
        for c_in, c_out in zip(channels, channels[1:]):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.blocks = nn.Sequential(*blocks)
        self.coords = coords
        self.output_size = channels[-1] + (2 if coords else 0)

    def forward(self, images):
        if images.dim() != 4 or images.size(-1) < 8 or images.size(-2) < 8:
            raise ValueError(f"ImageEncoder: images must be (N, C, S, S) with S >= 8, "
                             f"got {tuple(images.shape)}")
        features = self.blocks(images)  # (N, D, S/8, S/8)
        if self.coords:
            rows, cols = features.shape[-2:]
            y = torch.linspace(-1, 1, rows, device=features.device, dtype=features.dtype)
            x = torch.linspace(-1, 1, cols, device=features.device, dtype=features.dtype)
            where = torch.stack(torch.meshgrid(y, x, indexing="ij"))  # (2, rows, cols)
            features = torch.cat([features, where.expand(features.size(0), -1, -1, -1)], 1)
        grid = features.flatten(2).transpose(1, 2)  # (N, L, D)
        return grid, grid.mean(1)

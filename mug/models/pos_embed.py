"""Fixed 2-D sin-cos position embeddings (MAE's), built in torch so no numpy round trip is needed."""

import torch


def _sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    angles = positions.reshape(-1, 1).double() * omega  # [M, dim/2]
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # [M, dim]


def sincos_2d(dim: int, grid_size: int, cls_token: bool) -> torch.Tensor:
    """[1, (1 +) grid_size**2, dim] table; the CLS slot, if any, is all zeros as in MAE."""
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")  # patch k = row * grid_size + col
    # MAE's order: the first half encodes the column (MAE's np.meshgrid(grid_w, grid_h) puts w first).
    emb = torch.cat([_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], dim=0)
    return emb.float().unsqueeze(0)

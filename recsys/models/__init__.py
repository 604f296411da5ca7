"""Graph recommendation models: plain ``nn.Module``s and sparse helpers, no I/O."""

from __future__ import annotations

from recsys.models.adjacency import NormalizedAdjacency, normalized_adjacency
from recsys.models.lightgcn import FeatureLightGCN

__all__ = ["FeatureLightGCN", "NormalizedAdjacency", "normalized_adjacency"]

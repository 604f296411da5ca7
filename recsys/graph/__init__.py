"""Point-in-time graph snapshots: weighted user-product edges, stable id maps, node features.

Torch-free on purpose: the serving image loads snapshots (id maps, feature spec,
item table) without torch.
"""

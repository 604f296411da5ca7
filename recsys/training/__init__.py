"""Training of the GNN: data, sampling, the BPR loop, checkpoints, tracking, artifacts."""

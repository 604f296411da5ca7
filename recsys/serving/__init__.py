"""The recommendation server (FastAPI + onnxruntime, no torch): ``app`` (HTTP API),
``engine`` (one loaded bundle), ``registry`` (the production pointer and rollback)."""

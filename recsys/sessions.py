"""The onnxruntime session every caller runs a scorer in (:mod:`recsys.scorer` builds the
graph): the server, the export gate, the model gate's production scorer.

Kept apart from the graph builders so that a server imports onnxruntime but not ``onnx``.
"""

from __future__ import annotations

import onnxruntime as ort


def scorer_session(model: bytes, threads: int = 1) -> ort.InferenceSession:
    """An onnxruntime CPU session for a scorer or a feature projection, as every caller runs
    them: ``threads`` intra-op threads, one inter-op thread, sequential. One thread by default:
    a request is one small matmul (more threads only contend on a shared CPU), and a gate gets
    the same bytes out wherever it runs."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])

"""The one way this engine opens an ONNX Runtime CPU session (torch-free: the slim image uses it too)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_session(path: Path, threads: int | None = None, *, spin: bool = False):
    """An InferenceSession of the graph at PATH on the CPU, fully optimised, with THREADS intra-op
    threads (default: one per core), whose idle threads sleep rather than spin.

    Spinning is ONNX Runtime's default: after a run its threads busy-wait for the next one. A search
    runs two sessions in turn (the embedding, then the landmark prior), and on two cores each one's
    spinning threads took the CPU the other needed: alternating Lite0 and the prior took 52.7 ms a photo
    with spinning and 31.0 ms without, the default ensemble 122.2 against 68.7 (bench/sessions.py,
    and bench/service_throughput.py).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    # spin=True: ONNX Runtime's own default, for bench/sessions.py to compare against.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

"""NVIDIA Triton as a user would deploy this model with PyTriton: the exported ONNX model and its tokenizer
in a Python callable, behind Triton's own HTTP/gRPC front-end and dynamic batcher.

Runs in its own venv (benchmarks/.venv-pytriton: nvidia-pytriton, onnxruntime, tokenizers, numpy; see
benchmarks/triton.py), so it imports nothing from the project. Serves KServe v2 like our server: a BYTES
input `TEXT` of shape [N, 1] and the FP32 output `sentence_embedding` of shape [N, dim], binding 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# This app runs in PyTriton's own venv (benchmarks/triton.py), where the project is not importable: the
# repository's tensor names (server/repository.py TEXT_INPUT, OUTPUT_EMBEDDING) are repeated here.
TEXT = "TEXT"
OUTPUT = "sentence_embedding"
# PyTriton 0.7 restricts these by default; statistics stays open because perf_analyzer reads it.
RESTRICTED = ["shared-memory", "model-repository", "trace", "logging"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.apps.pytriton_app", description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True, help="holds model.onnx, tokenizer.json")
    parser.add_argument("--name", required=True, help="model name served by Triton")
    parser.add_argument("--dimension", type=int, required=True)
    parser.add_argument("--intra-op-threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--instances", type=int, default=1, help="model instances, one session each")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--workspace", type=Path, help="PyTriton's workspace (default: its own)")
    return parser.parse_args(argv)


def session(model: Path, intra_op_threads: int):
    """ORT session with the server's options: explicit intra-op threads, inter-op 1, sequential."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])


def infer_function(model_dir: Path, intra_op_threads: int):
    """A batched callable: TEXT [N, 1] bytes -> sentence_embedding [N, dim] (the published tokenizer pads)."""
    from pytriton.decorators import batch
    from tokenizers import Tokenizer

    onnx_session = session(model_dir / "model.onnx", intra_op_threads)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    inputs = [i.name for i in onnx_session.get_inputs()]

    @batch
    def infer(**tensors: np.ndarray) -> dict[str, np.ndarray]:
        texts = [item.decode("utf-8") for item in tensors[TEXT].reshape(-1)]
        encodings = tokenizer.encode_batch(texts)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        feed = {name: np.asarray(columns[name], dtype=np.int64) for name in inputs}
        (embeddings,) = onnx_session.run([OUTPUT], feed)
        return {OUTPUT: embeddings.astype(np.float32)}

    return infer


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until SIGINT or SIGTERM; both leave through PyTriton's own shutdown (server, stubs, shm)."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    args = parse_args(argv)
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
    )
    functions = [infer_function(args.model_dir, args.intra_op_threads) for _ in range(args.instances)]
    signal.signal(signal.SIGTERM, _interrupt)
    security = TritonSecurityConfig(restricted_endpoints=RESTRICTED)
    with Triton(config=config, workspace=args.workspace, security_config=security) as triton:
        triton.bind(
            model_name=args.name,
            infer_func=functions,
            inputs=[Tensor(name=TEXT, dtype=bytes, shape=(1,))],
            outputs=[Tensor(name=OUTPUT, dtype=np.float32, shape=(args.dimension,))],
            config=ModelConfig(max_batch_size=args.max_batch_size, batcher=DynamicBatcher()),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()

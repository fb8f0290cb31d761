"""Benchmark harness: every contender behind the same HTTP load, the offline ONNX Runtime ceiling, and a soak.

`python -m benchmarks` runs the comparison, `python -m benchmarks.soak` the memory soak; results go to
`benchmarks/results/`.
"""

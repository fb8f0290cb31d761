"""python -m export: sentence-transformers model → verified ONNX model(s) in a Triton-style model repository.

Exit codes: 0 published; 2 bad input (nothing written); 3 verification failed (nothing published);
130 interrupted (nothing published); 1 any other failure.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from server.config import from_arguments
from server.repository import FP32, PRECISIONS

from .config import DEFAULT_REPOSITORY, INT8_ACTIVATIONS, PER_TOKEN, ExportConfig
from .errors import ExportError, InputError

EXIT_INTERRUPTED = 130


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a sentence-transformers model to ONNX (pooling, Dense, Normalize in the graph), "
        "verify it against sentence-transformers and publish it into a Triton-style model repository.",
    )
    _what_to_publish(p)
    _how_to_verify(p)
    return p


def _what_to_publish(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        dest="source",
        metavar="PATH_OR_HUB_ID",
        help="sentence-transformers model directory or hub id (default: the bundled all-MiniLM-L6-v2)",
    )
    p.add_argument("--name", help="model name in the repository (default: derived from the source)")
    p.add_argument(
        "--repository",
        type=Path,
        default=DEFAULT_REPOSITORY,
        help="model repository directory (default: %(default)s)",
    )
    p.add_argument("--version", type=int, default=1, help="version to publish (default: %(default)s)")
    p.add_argument(
        "--max-seq-length",
        type=int,
        help="truncate inputs at this many tokens (default: the model's own; at most its position limit)",
    )
    p.add_argument(
        "--precision",
        nargs="+",
        choices=PRECISIONS,
        default=[FP32],
        metavar="{fp32,fp16,int8}",
        help="precisions to publish, each as a model of its own: fp32 as NAME, others as NAME-fp16 "
        "and NAME-int8 (default: fp32)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing version")


def _how_to_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--optimize",
        action="store_true",
        help="publish the fp32 graph after ORT transformers-optimizer fusions (verified the same way)",
    )
    p.add_argument(
        "--int8-activations",
        choices=INT8_ACTIVATIONS,
        default=PER_TOKEN,
        help="int8 activation scales: one per token, so that a text's vector does not depend on the texts "
        "batched with it, or one per tensor, shared by the whole batch (faster, but a text's vector moves "
        "with its neighbours) (default: %(default)s)",
    )
    p.add_argument(
        "--sts-data",
        type=Path,
        help="STS-B test TSV for the int8 and --expect-sts gates "
        "(default: data/stsb/sts-test.tsv of this repository)",
    )
    p.add_argument(
        "--expect-sts",
        type=float,
        metavar="SPEARMAN",
        help="fail (exit 3, nothing published) unless the fp32 export's STS-B test Spearman x100 (cosine) is "
        "within --expect-sts-tolerance of this value, e.g. the published score of the model",
    )
    p.add_argument(
        "--expect-sts-tolerance",
        type=float,
        default=0.05,
        metavar="POINTS",
        help="allowed distance from --expect-sts, in Spearman x100 points (default: %(default)s)",
    )
    p.add_argument("--verbose", action="store_true", help="also show the libraries' own log output")


def config_from_args(args: argparse.Namespace) -> ExportConfig:
    return from_arguments(ExportConfig, args, precisions=tuple(args.precision))


def _interrupt_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from . import logs

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm) if in_main_thread else None
    try:
        from .pipeline import execute, plan

        export_plan = plan(config_from_args(args))
        with logs.to_stderr(args.verbose):
            execute(export_plan)
    except KeyboardInterrupt:
        print("export: interrupted; nothing was published", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ExportError as exc:
        label = "error" if isinstance(exc, InputError) else "failed"
        print(f"export: {label}: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())

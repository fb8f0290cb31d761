"""The picture: throughput and probe p99 against concurrency, one line per contender, the ceiling dashed."""

from __future__ import annotations

from pathlib import Path


def plot(run: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for name, entry in run["contenders"].items():
        points = sorted(
            (p for p in entry.get("points", []) if p["batch"] == 1 and p["texts_per_s"] > 0),
            key=lambda p: p["concurrency"],
        )
        if not points:
            continue
        xs = [p["concurrency"] for p in points]
        style = "--" if entry.get("group") == "check" else "-"
        left.plot(xs, [p["texts_per_s"] for p in points], style, marker="o", label=name)
        right.plot(xs, [p["probe_p99_ms"] for p in points], style, marker="o", label=name)
    best = (run.get("ceiling") or {}).get("best_texts_per_s")
    if best:
        left.axhline(best, color="black", linestyle=":", label="offline ceiling")
    right.axhline(5.0, color="red", linestyle=":", label="5 ms target")
    for axis, title, ylabel in (
        (left, "Throughput", "texts/s"),
        (right, "Health probe p99 (every 20 ms)", "ms"),
    ):
        axis.set_xscale("log", base=2)
        axis.set_xticks(run["settings"]["concurrency"], [str(c) for c in run["settings"]["concurrency"]])
        axis.set_yscale("log")
        axis.set_xlabel("concurrent clients (one text per request)")
        axis.set_ylabel(ylabel)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""Benchmark the original -> native conversion: wall time and peak memory against the size.

Run: ``.venv/bin/python tools/bench_convert.py [--size 1b] [--shard-mb 500] [--dir DIR]``.
Writes a random-weight checkpoint in InternVL's original format with InternVL3-1B's layer sizes
(bfloat16, InternViT-300M + Qwen2.5-0.5B), then converts it in a fresh subprocess and prints the
conversion's wall time and the subprocess's peak RSS next to the checkpoint's size and its
largest shard. Streaming means the peak stays near one shard plus what is being written,
never the whole model: run with ``--shard-mb`` to see the peak follow the shard size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout

# VmHWM (this process's own peak RSS): ru_maxrss would carry the parent's peak across exec.
_CHILD = """
import re, sys, time
import torch, transformers, safetensors.torch
from transformers import InternVLForConditionalGeneration
from internvl_agent.engine.convert import convert_checkpoint
def peak_kib():
    status = open("/proc/self/status").read()
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
if sys.argv[1] == "--baseline":
    print(0.0, peak_kib())
    raise SystemExit
started = time.perf_counter()
convert_checkpoint(sys.argv[1], sys.argv[2], progress=False)
print(time.perf_counter() - started, peak_kib())
"""


def _child(*argv: str) -> tuple[float, int]:
    """(seconds, peak RSS in bytes) of one conversion in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    seconds, kib = done.stdout.strip().splitlines()[-1].split()
    return float(seconds), int(kib) * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1b", help="1b (InternVL3-1B layer sizes) or tiny")
    parser.add_argument("--llm", default="qwen2", choices=["qwen2", "internlm2"])
    parser.add_argument("--shard-mb", type=int, default=0, help="split the source (0: one file)")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    args = parser.parse_args()

    from internvl_agent.engine.tiny import write_original_checkpoint

    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-convert-"))
    source, target = root / "original", root / "native"
    if not (source / "config.json").exists():
        started = time.perf_counter()
        shard = args.shard_mb * 1024 * 1024 or None
        write_original_checkpoint(source, args.llm, args.size, dtype="bfloat16", shard_bytes=shard)
        print(f"wrote the original checkpoint in {time.perf_counter() - started:.1f} s")
    files = sorted(source.glob("*.safetensors"))
    total = sum(f.stat().st_size for f in files)
    largest = max(f.stat().st_size for f in files)
    if target.exists():
        import shutil

        shutil.rmtree(target)
    _, baseline = _child("--baseline")
    started = time.perf_counter()
    inner, peak = _child(str(source), str(target))
    wall = time.perf_counter() - started
    out_total = sum(f.stat().st_size for f in target.glob("*.safetensors"))
    result = {
        "size": args.size,
        "llm": args.llm,
        "source_files": len(files),
        "checkpoint_gb": round(total / 1e9, 3),
        "largest_shard_gb": round(largest / 1e9, 3),
        "converted_gb": round(out_total / 1e9, 3),
        "convert_s": round(inner, 2),
        "process_wall_s": round(wall, 2),
        "peak_rss_gb": round(peak / 1e9, 3),
        "baseline_rss_gb": round(baseline / 1e9, 3),  # the same imports, converting nothing
        "peak_over_checkpoint": round(peak / total, 2),
        "peak_above_baseline_over_largest_shard": round((peak - baseline) / largest, 2),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Installed size of the core package set (``pip install internvl-agent``, no extras).

Measured, not estimated: the core requirements of pyproject.toml are resolved against the
distributions installed in this environment (markers evaluated for this machine, extras off)
and the files each installed distribution lists in its RECORD are summed (sizes read from the
disk). Printed: every package of the set with its size, the total, and the same set with
each grammar backend as the core one (llguidance: the default; xgrammar: what the core pulled
before, triton included on Linux x86-64).

    python tools/measure_install.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CUDA = re.compile(r"^(nvidia-|cuda-|cupy|triton)", re.IGNORECASE)


def _name(requirement: str | Requirement) -> str:
    req = requirement if isinstance(requirement, Requirement) else Requirement(requirement)
    return re.sub(r"[-_.]+", "-", req.name).lower()


def installed_size(dist: metadata.Distribution) -> int:
    """Bytes of the files `dist` installed (its RECORD), read from the disk."""
    total = 0
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        with contextlib.suppress(OSError):
            total += os.path.getsize(path)
    return total


def closure(roots: list[str]) -> dict[str, metadata.Distribution]:
    """Every installed distribution the requirement strings `roots` pull in (no extras)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = _name(req)
        if name in found:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            print(f"  (not installed here, not counted: {req})", file=sys.stderr)
            continue
        found[name] = dist
        todo.extend(Requirement(r) for r in dist.requires or [])
    return found


def core_requirements() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(data["project"]["dependencies"])


def report(title: str, roots: list[str], *, verbose: bool) -> int:
    dists = closure(roots)
    sizes = {name: installed_size(d) for name, d in dists.items()}
    total = sum(sizes.values())
    cuda = [n for n in sizes if CUDA.match(n)]
    print(f"\n{title}: {len(sizes)} distributions, {total / 1e6:.0f} MB installed")
    print(f"  triton / CUDA packages in the set: {', '.join(cuda) or 'none'}")
    if verbose:
        for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
            print(f"  {size / 1e6:9.1f} MB  {name} {dists[name].version}")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quiet", action="store_true", help="totals only")
    args = parser.parse_args()
    core = core_requirements()
    without = [r for r in core if _name(r) not in ("llguidance", "xgrammar")]
    torch_size = installed_size(metadata.distribution("torch"))
    print(f"torch here: {metadata.version('torch')} ({torch_size / 1e6:.0f} MB)")
    a = report("core (llguidance backend)", core, verbose=not args.quiet)
    b = report("core with xgrammar as the backend (before)", [*without, "xgrammar"], verbose=False)
    print(f"\nxgrammar core / llguidance core: {b / 1e6:.0f} MB / {a / 1e6:.0f} MB = x{b / a:.2f}")


if __name__ == "__main__":
    main()

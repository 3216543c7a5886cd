"""Browser capture forms side by side: time to a PIL image (or to bytes), exactness, tiles.

Headless Chromium shows the example shop page; each form is timed interleaved with the
others (medians); an 8x8 clip shows the fixed cost of any capture (a new frame). Every
image is compared with Playwright's PNG: lossless forms must match it exactly; for lossy
ones the effect on what the model sees is printed as the largest difference of the
normalized tiles (preprocess_image, 12 tiles), against the PNG's tiles.

    python tools/bench_capture.py [--viewport 1920x1080 --rounds 15]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package

from internvl_agent.computers.browser import CAPTURE_PARAMS, BrowserComputer
from internvl_agent.engine.images import TilingConfig, preprocess_image

REPO = Path(__file__).resolve().parents[1]
TINY_CLIP = {"x": 0, "y": 0, "width": 8, "height": 8, "scale": 1}


def forms(browser: BrowserComputer) -> dict[str, Callable[[], tuple[Image.Image | None, int]]]:
    """name -> capture returning (decoded RGB image or None, encoded bytes)."""
    page = browser.page
    session = page.context.new_cdp_session(page)

    def playwright_png() -> tuple[Image.Image | None, int]:
        png = page.screenshot(type="png", caret="initial")
        image = Image.open(io.BytesIO(png))
        image.load()
        return image, len(png)

    def cdp(params: dict[str, Any], decode: bool = True) -> Callable[[], Any]:
        def capture() -> tuple[Image.Image | None, int]:
            data = base64.b64decode(session.send("Page.captureScreenshot", params)["data"])
            if not decode:
                return None, len(data)
            image = Image.open(io.BytesIO(data))
            image.load()
            return image.convert("RGB"), len(data)

        return capture

    def ours(decode: bool) -> Callable[[], tuple[Image.Image | None, int]]:
        def capture() -> tuple[Image.Image | None, int]:
            shot = browser.screenshot()
            return (shot.image if decode else None), len(shot.png or b"")

        return capture

    fast = {"optimizeForSpeed": True}
    return {
        "playwright png + decode": playwright_png,
        "cdp png + decode": cdp({"format": "png"}),
        "cdp fast png + decode": cdp(CAPTURE_PARAMS),
        "cdp fast png, bytes only": cdp(CAPTURE_PARAMS, decode=False),
        # the floor of any capture: Chromium producing a frame (the encoding is negligible)
        "cdp fast png, 8x8 clip": cdp({**CAPTURE_PARAMS, "clip": TINY_CLIP}, decode=False),
        "cdp webp q100 + decode": cdp({"format": "webp", "quality": 100}),
        "cdp jpeg q90 + decode": cdp({"format": "jpeg", "quality": 90}),
        "cdp jpeg q90 fast + decode": cdp({"format": "jpeg", "quality": 90, **fast}),
        "BrowserComputer.screenshot()": ours(decode=False),
        "  ... + .image (decode)": ours(decode=True),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewport", default="1920x1080")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    width, height = (int(v) for v in args.viewport.lower().split("x"))
    sys.path.insert(0, str(REPO / "examples" / "webapp"))
    from serve import serve

    load = os.getloadavg()[0]
    url, server = serve(REPO / "examples" / "webapp")
    try:
        with BrowserComputer(viewport=(width, height)) as browser:
            assert browser.navigate(url + "shop.html").ok
            captures = forms(browser)
            reference = np.asarray(captures["playwright png + decode"]()[0].convert("RGB"))
            tiles = preprocess_image(Image.fromarray(reference), TilingConfig()).pixel_values
            exact: dict[str, str] = {}
            for name, capture in captures.items():
                image, size = capture()
                if image is None:
                    exact[name] = f"{size / 1024:7.0f} KiB  (not decoded)"
                    continue
                pixels = np.asarray(image.convert("RGB"))
                diff = int(np.abs(pixels.astype(int) - reference).max())
                note = "identical" if diff == 0 else f"max pixel diff {diff}"
                if diff:
                    theirs = preprocess_image(image.convert("RGB"), TilingConfig()).pixel_values
                    note += f", tiles max |diff| {float(np.abs(theirs - tiles).max()):.3f}"
                exact[name] = f"{size / 1024:7.0f} KiB  {note}"
            times: dict[str, list[float]] = {name: [] for name in captures}
            for _ in range(args.rounds):
                for name, capture in captures.items():
                    start = time.perf_counter()
                    capture()
                    times[name].append((time.perf_counter() - start) * 1000)
    finally:
        server.shutdown()
        server.server_close()
    print(f"capture of {width}x{height}, medians of {args.rounds} interleaved rounds")
    print(f"load average (1 min) before {load:.2f}, after {os.getloadavg()[0]:.2f}")
    base = statistics.median(times["playwright png + decode"])
    for name, values in times.items():
        ms = statistics.median(values)
        print(f"  {name:<30} {ms:7.1f} ms  x{base / ms:4.2f}  {exact[name]}")


if __name__ == "__main__":
    main()

"""Benchmark screen capture: mss (what DesktopComputer uses) against pyautogui.screenshot().

Run: ``.venv/bin/python tools/bench_screenshot.py [--size 1920x1080 --rounds 30]``.

Uses $DISPLAY, or starts its own Xvfb of --size when DISPLAY is unset. Both capture the same
top-left region as a PIL RGB image, interleaved (the order alternates every round) after a
warm-up; the script checks that the two images are identical and prints the medians, their
ratio and DesktopComputer.screenshot() (capture + conversion + mapping) for reference.

On Linux pyautogui.screenshot() goes through pyscreeze, which takes the in-memory path
(PIL.ImageGrab) only when gnome-screenshot is installed, else shells out to scrot, else
fails. Without either, this script forces pyscreeze's ImageGrab path (and says so), which is
pyautogui's fastest one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout


def start_xvfb(size: tuple[int, int]) -> tuple[subprocess.Popen[bytes], str]:
    """An Xvfb on a free display number (-displayfd), ready when this returns."""
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen(
        [
            *("Xvfb", "-displayfd", str(write_fd)),
            *("-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp"),
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        number = pipe.readline().strip()
    if not number.isdigit():
        process.kill()
        process.wait()
        raise SystemExit("Xvfb did not start (is it installed? apt-get install xvfb)")
    return process, f":{number.decode()}"


def paint(size: tuple[int, int]) -> subprocess.Popen[bytes] | None:
    """Put something on the screen (the Tk test app), so captures are not blank."""
    app = Path(__file__).resolve().parents[1] / "examples" / "desktop_app.py"
    log = Path(os.devnull)
    geometry = f"{size[0]}x{size[1]}+0+0"
    try:
        process = subprocess.Popen(
            [sys.executable, str(app), str(log), "--geometry", geometry, "--quit-after", "120"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None
    time.sleep(1.5)
    return process


def interleaved_medians(
    funcs: dict[str, Callable[[], object]], rounds: int, warmup: int
) -> dict[str, float]:
    """Median milliseconds per function, alternating their order every round."""
    for _ in range(warmup):
        for func in funcs.values():
            func()
    times: dict[str, list[float]] = {name: [] for name in funcs}
    names = list(funcs)
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            start = time.perf_counter()
            funcs[name]()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1920x1080", help="WxH captured (and Xvfb's size)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    xvfb = app = None
    if not os.environ.get("DISPLAY"):
        xvfb, os.environ["DISPLAY"] = start_xvfb((width, height))
        origin = "Xvfb started by this script"
        app = paint((width, height))
    else:
        origin = "from $DISPLAY"
    try:
        run(width, height, args.rounds, args.warmup, origin)
    finally:
        for process in (app, xvfb):
            if process is not None:
                process.terminate()
                process.wait()


def run(width: int, height: int, rounds: int, warmup: int, origin: str) -> None:
    from internvl_agent.computers.desktop import DesktopComputer

    desktop = DesktopComputer(monitor=0)
    desktop.launch()  # imports pyautogui with the XAUTHORITY fallback, opens mss
    import mss
    import pyautogui
    import pyscreeze

    screen = desktop.layout.bounds
    width, height = min(width, screen.width), min(height, screen.height)
    box = {"left": screen.left, "top": screen.top, "width": width, "height": height}
    region = (screen.left, screen.top, width, height)
    note = ""
    if sys.platform.startswith("linux") and not pyscreeze.GNOMESCREENSHOT_EXISTS:
        pyscreeze.GNOMESCREENSHOT_EXISTS = True  # use its in-memory ImageGrab path
        note = " (pyscreeze's ImageGrab path forced: gnome-screenshot is not installed)"

    factory = getattr(mss, "MSS", None) or mss.mss
    sct = factory()

    def with_mss() -> Image.Image:
        grab = sct.grab(box)
        return Image.frombytes("RGB", grab.size, grab.raw, "raw", "BGRX")

    def with_pyautogui() -> Image.Image:
        return pyautogui.screenshot(region=region).convert("RGB")

    same = with_mss().tobytes() == with_pyautogui().tobytes()
    medians = interleaved_medians(
        {"mss": with_mss, "pyautogui": with_pyautogui}, rounds=rounds, warmup=warmup
    )
    ours = interleaved_medians({"desktop": desktop.screenshot}, rounds=rounds, warmup=warmup)
    print(f"display {os.environ['DISPLAY']} ({origin}), capture {width}x{height}, {rounds} rounds")
    print(f"  mss grab -> PIL image         {medians['mss']:8.2f} ms (median)")
    print(f"  pyautogui.screenshot()        {medians['pyautogui']:8.2f} ms (median){note}")
    print(f"  ratio pyautogui / mss         {medians['pyautogui'] / medians['mss']:8.2f}x")
    print(f"  DesktopComputer.screenshot()  {ours['desktop']:8.2f} ms (whole screen)")
    print(f"  identical pixels              {same}")
    sct.close()
    desktop.close()
    if not same:
        raise SystemExit("the two captures differ")


if __name__ == "__main__":
    main()

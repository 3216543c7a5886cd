"""A small Tk app for desktop-agent tests: five buttons and a text field that log every hit.

    python examples/desktop_app.py hits.jsonl [--geometry 1280x800+0+0] [--name main]

Buttons sit at the four corners and the centre of the window, a text field near the top.
One JSON object per line goes to the log file (flushed at once):

- ``{"event": "ready", "app": NAME, "window": [x, y, w, h], "widgets": {ID: [x, y, w, h]}}``
  once the window is mapped; positions are root-window (screen) pixels.
- ``{"event": "press" | "release" | "double" | "triple", "widget": ID, "num": BUTTON,
  "state": MASK, "x_root": X, "y_root": Y}`` for mouse buttons on a widget (num 4/5 = wheel
  up/down; Tk reports the horizontal wheel, X buttons 6/7, as 4/5 with Shift in state).
- ``{"event": "key", "keysym": NAME, "state": MASK, "widget": FOCUSED_ID}`` for each key press.
- ``{"event": "text", "text": TEXT}`` each time the field's text changes.

Widget IDs: top_left, top_right, bottom_left, bottom_right, centre, field.
Without --geometry the window covers the whole screen (root window).
"""

from __future__ import annotations

import argparse
import json
import tkinter as tk
from pathlib import Path
from typing import Any, TextIO

BUTTONS: dict[str, tuple[float, float, str]] = {
    # id: (relx, rely, anchor)
    "top_left": (0.0, 0.0, "nw"),
    "top_right": (1.0, 0.0, "ne"),
    "bottom_left": (0.0, 1.0, "sw"),
    "bottom_right": (1.0, 1.0, "se"),
    "centre": (0.5, 0.5, "center"),
}
BUTTON_SIZE = (140, 56)
FIELD_WIDTH = 420
BACKGROUND = "#eeeeee"  # the window
BUTTON_COLOUR = "#1f5fbf"  # every button face, hovered or not: screenshots can be checked


class HitLog:
    """Appends JSON lines to a file, flushing each one."""

    def __init__(self, stream: TextIO, app: str) -> None:
        self.stream = stream
        self.app = app

    def write(self, **record: Any) -> None:
        self.stream.write(json.dumps({"app": self.app, **record}, ensure_ascii=False) + "\n")
        self.stream.flush()


def _box(widget: tk.Misc) -> list[int]:
    """[x, y, width, height] of a widget in root-window pixels."""
    return [widget.winfo_rootx(), widget.winfo_rooty(), widget.winfo_width(), widget.winfo_height()]


def build(root: tk.Tk, log: HitLog) -> dict[str, tk.Widget]:
    """Create the buttons and the field, wired to `log`; returns them by ID."""
    widgets: dict[str, tk.Widget] = {}
    for name, (relx, rely, anchor) in BUTTONS.items():
        button = tk.Button(
            root,
            text=name.replace("_", " "),
            name=name,
            bg=BUTTON_COLOUR,
            activebackground=BUTTON_COLOUR,
            fg="white",
            activeforeground="white",
            highlightthickness=0,
        )
        button.place(
            relx=relx, rely=rely, anchor=anchor, width=BUTTON_SIZE[0], height=BUTTON_SIZE[1]
        )
        widgets[name] = button
    text = tk.StringVar(root)
    field = tk.Entry(root, textvariable=text, name="field", font=("TkDefaultFont", 14))
    field.place(relx=0.5, rely=0.25, anchor="center", width=FIELD_WIDTH, height=36)
    widgets["field"] = field
    text.trace_add("write", lambda *_: log.write(event="text", text=text.get()))

    for name, widget in widgets.items():
        for sequence, event_name in (
            ("<ButtonPress>", "press"),
            ("<ButtonRelease>", "release"),
            ("<Double-Button-1>", "double"),
            ("<Triple-Button-1>", "triple"),
        ):
            widget.bind(sequence, _mouse_logger(log, name, event_name), add="+")

    def on_key(event: tk.Event) -> None:
        focused = root.focus_get()
        log.write(
            event="key",
            keysym=event.keysym,
            state=int(event.state) if isinstance(event.state, int) else 0,
            widget=focused.winfo_name() if focused is not None else None,
        )

    root.bind("<KeyPress>", on_key, add="+")  # the toplevel tag: before "all" (Tab traversal)
    return widgets


def _mouse_logger(log: HitLog, name: str, event_name: str) -> Any:
    def handler(event: tk.Event) -> None:
        log.write(
            event=event_name,
            widget=name,
            num=event.num,
            state=int(event.state) if isinstance(event.state, int) else 0,
            x_root=event.x_root,
            y_root=event.y_root,
        )

    return handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="JSON-lines file that receives the hits")
    parser.add_argument("--geometry", help="WxH+X+Y; default: the whole screen")
    parser.add_argument("--name", default="main", help="app name written in every line")
    parser.add_argument("--title", default="internvl-agent desktop test app")
    parser.add_argument(
        "--quit-after", type=float, default=0, help="exit after this many seconds (0 = never)"
    )
    args = parser.parse_args(argv)

    root = tk.Tk()
    root.title(args.title)
    root.configure(bg=BACKGROUND)
    geometry = args.geometry or f"{root.winfo_screenwidth()}x{root.winfo_screenheight()}+0+0"
    root.geometry(geometry)
    with args.log.open("a", encoding="utf-8") as stream:
        log = HitLog(stream, args.name)
        widgets = build(root, log)
        root.wait_visibility()
        root.update()
        log.write(
            event="ready",
            window=_box(root),
            widgets={name: _box(widget) for name, widget in widgets.items()},
        )
        if args.quit_after > 0:
            root.after(int(args.quit_after * 1000), root.destroy)
        root.mainloop()


if __name__ == "__main__":
    main()

"""The interface every computer implements.

Coordinates passed to a computer are integer pixels of the most recent screenshot it returned
(top-left origin). The agent converts the model's 0..1000 coordinates to screenshot pixels;
each computer converts screenshot pixels to its own input space (CSS pixels for a browser,
logical points for the desktop) in one place.
"""

from __future__ import annotations

import abc
import base64
import contextlib
import io
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from internvl_agent.engine.images import freeze_image

MouseButton = Literal["left", "right", "middle"]
Modifier = Literal["ctrl", "shift", "alt", "meta"]
ScrollDirection = Literal["up", "down", "left", "right"]
RequestFilter = Callable[[str], bool]
"""A URL -> whether the computer may send a request for it."""


class Screenshot:
    """One capture of the screen or page, as the model sees it.

    Built from a PIL ``image``, or from the computer's own ``png`` bytes alone (a browser's
    capture): then ``image`` is decoded from them on first use, once and thread-safely, so a
    step whose model takes a data URL never decodes the PNG at all (the recorder's writer
    thread does, to draw the marked copy). It is encoded at most once: ``png`` is the
    computer's own PNG when it has one, else ``png_bytes()`` encodes ``image`` on first use;
    the model gets ``content_block(model)``, the run record the same PNG bytes.
    """

    def __init__(
        self,
        image: Image.Image | None = None,
        url: str | None = None,
        title: str | None = None,
        extra: dict[str, object] | None = None,
        png: bytes | None = None,
    ) -> None:
        if image is None and png is None:
            raise ValueError("a Screenshot needs an image or its PNG bytes")
        self._image = image
        self.url = url
        self.title = title
        self.extra: dict[str, object] = {} if extra is None else extra
        self.png = png
        self._data_url: str | None = None
        self._lock = threading.Lock()
        if image is not None:
            self._size: tuple[int, int] = image.size
        else:
            assert png is not None
            with Image.open(io.BytesIO(png)) as header:  # reads the header only
                if header.format != "PNG":
                    raise ValueError(f"expected PNG bytes, got {header.format}")
                self._size = header.size

    def __repr__(self) -> str:
        width, height = self._size
        return f"Screenshot({width}x{height}, url={self.url!r}, title={self.title!r})"

    @property
    def image(self) -> Image.Image:
        """The pixels as a PIL image (decoded from ``png`` on first use)."""
        if self._image is None:
            with self._lock:
                if self._image is None:
                    assert self.png is not None
                    image = Image.open(io.BytesIO(self.png))
                    image.load()
                    self._image = image
        return self._image

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, known without decoding."""
        return self._size

    def png_bytes(self) -> bytes:
        """The image as PNG (encoded once, with a fast zlib level: lossless like any PNG)."""
        if self.png is None:
            image = self.image
            if image.mode not in ("RGB", "RGBA", "L", "LA"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=1)
            self.png = buffer.getvalue()
        return self.png

    def data_url(self) -> str:
        """The image as a ``data:image/png;base64,...`` URL (built once)."""
        if self._data_url is None:
            encoded = base64.b64encode(self.png_bytes()).decode("ascii")
            self._data_url = "data:image/png;base64," + encoded
        return self._data_url

    def content_block(self, model: Any) -> dict[str, Any]:
        """The image as a message content block for `model`: the PIL image itself when the
        model says it takes one (``accepts_pil_images``, as ChatInternVL does), else an
        OpenAI-style ``image_url`` block with the PNG data URL (ChatOpenAI, vLLM...).

        A capture is never modified, so its image is frozen (`freeze_image`): ChatInternVL
        hashes it for its vision cache once, not at every step that resends it."""
        if getattr(model, "accepts_pil_images", False):
            return {"type": "image", "image": freeze_image(self.image)}
        return {"type": "image_url", "image_url": {"url": self.data_url()}}


@dataclass
class ActionOutcome:
    """What happened when an action ran: shown to the model as the step's outcome."""

    ok: bool
    message: str = ""
    url: str | None = None
    abort: bool = False  # the person took over (e.g. pyautogui's fail-safe): end the run


def refused_scroll(
    direction: str, amount: int, x: int | None, y: int | None
) -> ActionOutcome | None:
    """The ok=False outcome for scroll arguments no computer takes, else None."""
    if direction not in ("up", "down", "left", "right"):
        return ActionOutcome(False, f"unknown direction {direction!r}; use up/down/left/right")
    if amount < 1:
        return ActionOutcome(False, f"amount must be at least 1 notch, got {amount}")
    if (x is None) != (y is None):
        return ActionOutcome(False, "give both x and y, or neither to scroll at the centre")
    return None


class Computer(abc.ABC):
    """A screen the agent can look at and act on.

    ``settle_seconds`` adds up the time the computer spent waiting for the screen or page to
    settle (after actions, in ``wait``, and the pause that lets hover effects apply before a
    click): the agent records it as the step's ``settle`` phase, apart from the framework's
    own overhead.
    """

    kind: str = "computer"
    settle_seconds: float = 0.0

    @contextlib.contextmanager
    def settling(self) -> Iterator[None]:
        """Count the time spent inside the block into ``settle_seconds``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.settle_seconds += time.perf_counter() - start

    @abc.abstractmethod
    def screenshot(self) -> Screenshot:
        """Capture the current screen; later coordinates refer to this capture."""

    @abc.abstractmethod
    def click(
        self,
        x: int,
        y: int,
        *,
        button: MouseButton = "left",
        clicks: int = 1,
        modifiers: Sequence[Modifier] = (),
    ) -> ActionOutcome:
        """Click at screenshot pixel (x, y), holding `modifiers` (the agent passes them only
        when there are some, so a computer without them still works for plain clicks)."""

    def hover(self, x: int, y: int) -> ActionOutcome:
        """Move the pointer to screenshot pixel (x, y) without clicking."""
        return ActionOutcome(False, f"hover is not available on a {self.kind} computer")

    def select_option(self, x: int, y: int, option: str) -> ActionOutcome:
        """Choose `option` (its visible text) in the drop-down list at (x, y)."""
        return ActionOutcome(False, f"select_option is not available on a {self.kind} computer")

    def upload_file(self, x: int, y: int, path: str) -> ActionOutcome:
        """Give the file `path` (inside an allowed folder) to the upload control at (x, y)."""
        return ActionOutcome(False, f"upload_file is not available on a {self.kind} computer")

    def use_download_dir(self, folder: Path) -> None:  # noqa: B027 (optional hook)
        """Save the downloads of the coming run in `folder` (the run's record folder)."""

    @abc.abstractmethod
    def type_text(self, text: str) -> ActionOutcome:
        """Type text into whatever has focus."""

    @abc.abstractmethod
    def press_key(self, keys: str) -> ActionOutcome:
        """Press a key or a combination such as "ctrl+a" or "shift+Tab"."""

    @abc.abstractmethod
    def scroll(
        self,
        direction: ScrollDirection,
        amount: int = 3,
        x: int | None = None,
        y: int | None = None,
    ) -> ActionOutcome:
        """Scroll by `amount` notches, at (x, y) when given, else at the centre."""

    @abc.abstractmethod
    def drag(self, from_x: int, from_y: int, to_x: int, to_y: int) -> ActionOutcome:
        """Press at one screenshot pixel, move to another and release."""

    def navigate(self, url: str) -> ActionOutcome:
        """Open a URL (browsers only)."""
        return ActionOutcome(False, f"navigate is not available on a {self.kind} computer")

    def go_back(self) -> ActionOutcome:
        """Go back one page (browsers only)."""
        return ActionOutcome(False, f"go_back is not available on a {self.kind} computer")

    def wait(self, seconds: float) -> ActionOutcome:
        """Let the screen settle for `seconds`."""
        with self.settling():
            time.sleep(max(0.0, seconds))
        return ActionOutcome(True, f"waited {seconds:g}s")

    def is_blocked(self, keys: str) -> bool:
        """True for key combinations this computer refuses outright (see the desktop)."""
        return False

    def current_url(self) -> str | None:
        """The URL shown, for computers that have one."""
        return None

    def focused_url(self) -> str | None:
        """The URL of the document that holds the keyboard focus (a frame's, when a frame has
        it): where typed keys go. Default: `current_url`."""
        return self.current_url()

    def restrict_requests(  # noqa: B027 (optional hook, not abstract)
        self, allows: RequestFilter | None, *, subresources: bool = False
    ) -> None:
        """Never send a request for a URL `allows` refuses: documents (pages, frames, form
        submissions, popups, redirects), and with `subresources` every other request too.
        None lifts the restriction. Computers that send no requests of their own (the
        desktop) ignore it."""

    def close(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Release whatever the computer holds (browser, display)."""

    def __enter__(self) -> Computer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Files crossing between the agent's computer and the user's disk: uploads and downloads.

Uploads take files only from folders the user allowed. A path is resolved (symlinks
followed, ``..`` collapsed) before it is checked, so a link or a relative path that leads
out of an allowed folder is refused like any other outside file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from internvl_agent.errors import InternVLAgentError


class UploadRefused(InternVLAgentError):
    """The file asked for is not inside an allowed upload folder (or does not exist)."""


def allowed_upload(path: str, folders: Sequence[Path]) -> Path:
    """The real path of `path` (a name inside one of `folders`, or a full path) when it is a
    file inside one of them; UploadRefused with the reason otherwise."""
    if not folders:
        raise UploadRefused(
            "uploading is off: the user allowed no folder (BrowserComputer(upload_dirs=...), "
            "CLI --upload-dir); nothing was uploaded"
        )
    roots = [folder.resolve() for folder in folders]
    given = Path(path).expanduser()
    candidates = [given] if given.is_absolute() else [root / given for root in roots]
    for candidate in candidates:
        real = candidate.resolve()
        if not any(real.is_relative_to(root) for root in roots):
            continue
        if real.is_file():
            return real
    names = ", ".join(str(r) for r in roots)
    raise UploadRefused(
        f"{path!r} is not a file inside the allowed folder(s) {names}; nothing was uploaded"
    )


def unique_path(path: Path) -> Path:
    """`path`, or `name (2).ext`, `name (3).ext`... when it exists already."""
    if not path.exists():
        return path
    for n in range(2, 10_000):
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
        if not candidate.exists():
            return candidate
    raise InternVLAgentError(f"too many files named like {path}")

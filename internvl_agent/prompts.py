"""Prompt templates shipped with the package.

The repository's ``prompts/`` folder is installed inside the wheel as ``internvl_agent/prompts/``;
in a source checkout it is found at ``<repo>/prompts/``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from internvl_agent.errors import ConfigurationError

__all__ = ["load_prompt", "prompt_dirs"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def prompt_dirs() -> list[Path]:
    """Folders searched for prompts, in order: the installed copy, then the source checkout."""
    return [_PACKAGE_DIR / "prompts", _PACKAGE_DIR.parent / "prompts"]


@lru_cache(maxsize=32)
def load_prompt(name: str) -> str:
    """The text of prompt `name` ("agent_system" or "agent_system.md").

    Raises ConfigurationError listing where it looked when no such prompt exists.
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigurationError(f"invalid prompt name {name!r}: give a file name such as 'x.md'")
    filename = name if Path(name).suffix else f"{name}.md"
    for folder in prompt_dirs():
        path = folder / filename
        if path.is_file():
            return path.read_text(encoding="utf-8")
    looked = ", ".join(str(folder) for folder in prompt_dirs())
    raise ConfigurationError(f"prompt {filename!r} not found (looked in {looked})")

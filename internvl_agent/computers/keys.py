"""Key combinations as the model writes them ("ctrl+a", "shift+Tab", "super+L"), parsed once.

`parse_combo` turns the text into a `KeyCombo` of canonical names: modifiers ctrl, alt, shift,
meta (cmd/command/super/win/windows), then one key: a named key (enter, tab, escape,
backspace, delete, insert, home, end, pageup, pagedown, up, down, left, right, space,
capslock, menu, printscreen, f1..f24) or a single character. Case and aliases do not matter
for names; a letter after a modifier is lower-cased ("ctrl+A" is ctrl+a: say shift to mean
it). Computers translate the canonical combo to their own key names (`to_pyautogui`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ACCEPTED_KEYS_HELP",
    "KeyCombo",
    "KeySet",
    "loose_names",
    "parse_combo",
    "to_playwright_keys",
    "to_pyautogui",
]

MODIFIER_ORDER: tuple[str, ...] = ("ctrl", "alt", "shift", "meta")


def _aliases(table: dict[str, str]) -> dict[str, str]:
    """{"ctrl": "ctrl control"} -> {"ctrl": "ctrl", "control": "ctrl"}."""
    return {alias: name for name, spaced in table.items() for alias in spaced.split()}


MODIFIERS = _aliases(
    {
        "ctrl": "ctrl control ctl",
        "alt": "alt option opt",
        "shift": "shift",
        "meta": "meta cmd command super win windows os",
    }
)
NAMED_KEYS = _aliases(
    {
        "enter": "enter return",
        "tab": "tab",
        "escape": "escape esc",
        "backspace": "backspace bksp",
        "delete": "delete del",
        "insert": "insert ins",
        "home": "home",
        "end": "end",
        "pageup": "pageup pgup",
        "pagedown": "pagedown pgdn",
        "up": "up arrowup",
        "down": "down arrowdown",
        "left": "left arrowleft",
        "right": "right arrowright",
        "space": "space spacebar",
        "capslock": "capslock",
        "menu": "menu contextmenu apps",
        "printscreen": "printscreen prtsc prtscr print",
        "+": "plus",
        "-": "minus",
        **{f"f{n}": f"f{n}" for n in range(1, 25)},
    }
)
ACCEPTED_KEYS_HELP = (
    "modifiers ctrl, alt, shift, super/cmd/meta joined with '+' to one of: enter, tab, "
    "esc, backspace, delete, insert, home, end, pageup, pagedown, up, down, left, right, "
    "space, capslock, menu, printscreen, f1-f24, or a single character "
    "(e.g. 'ctrl+a', 'shift+Tab', 'alt+F4', 'Enter')"
)


@dataclass(frozen=True)
class KeyCombo:
    """Canonical modifiers (in MODIFIER_ORDER) and the key pressed with them.

    A lone modifier ("shift", "super") is a combo with no modifiers and that key.
    """

    modifiers: tuple[str, ...]
    key: str

    @property
    def names(self) -> frozenset[str]:
        """Every part, order-free: what blocked/risky key lists compare."""
        return frozenset((*self.modifiers, self.key))

    def __str__(self) -> str:
        return "+".join((*self.modifiers, self.key))


def _split(text: str) -> list[str]:
    """'ctrl++' -> ['ctrl', '+']; '+' -> ['+']; 'ctrl+a' -> ['ctrl', 'a']."""
    if text == "+":
        return ["+"]
    if text.endswith("++"):
        return [*text[:-2].split("+"), "+"]
    return text.split("+")


def _canonical(part: str, keys: str) -> str:
    if len(part) == 1:
        return part
    folded = part.lower().replace("_", "").replace("-", "").replace(" ", "")
    name = MODIFIERS.get(folded) or NAMED_KEYS.get(folded)
    if name is None:
        raise ValueError(f"unknown key {part!r} in {keys!r}; accepted: {ACCEPTED_KEYS_HELP}")
    return name


def parse_combo(keys: str) -> KeyCombo:
    """'Control+Shift+T' -> KeyCombo(('ctrl', 'shift'), 't').

    Raises ValueError naming the unknown or misplaced part and the accepted names.
    """
    text = keys.strip() if isinstance(keys, str) else ""
    if not text:
        raise ValueError(f"no key given; accepted: {ACCEPTED_KEYS_HELP}")
    parts = [p.strip() for p in _split(text)]
    if any(not p for p in parts):
        raise ValueError(f"empty part in {keys!r}; accepted: {ACCEPTED_KEYS_HELP}")
    names = [_canonical(p, keys) for p in parts]
    *mods, key = names
    misplaced = [p for p, n in zip(parts, mods, strict=False) if n not in MODIFIER_ORDER]
    if misplaced:
        raise ValueError(
            f"{misplaced[0]!r} in {keys!r} is not a modifier: press one key at a time, "
            f"with modifiers before it; accepted: {ACCEPTED_KEYS_HELP}"
        )
    modifiers = tuple(m for m in MODIFIER_ORDER if m in mods and m != key)
    if modifiers and len(key) == 1:
        key = key.lower()
    return KeyCombo(modifiers, key)


def loose_names(keys: str) -> frozenset[str]:
    """Each part's canonical name, order- and case-free ("a+CTRL" -> {"ctrl", "a"}), without
    parse_combo's placement rules; unknown names are kept lower-cased."""
    text = keys.strip() if isinstance(keys, str) else ""
    names = set()
    for part in (p.strip() for p in _split(text)) if text else ():
        folded = part.lower().replace("_", "").replace("-", "").replace(" ", "")
        if folded:
            names.add(MODIFIERS.get(folded) or NAMED_KEYS.get(folded) or part.lower())
    return frozenset(names)


class KeySet:
    """A set of combos matched order- and case-free ("Super+L" matches "meta+l")."""

    def __init__(self, combos: Iterable[str]) -> None:
        self.combos = tuple(combos)
        self._sets = {_match_key(parse_combo(c)) for c in self.combos}

    def matches(self, combo: KeyCombo) -> bool:
        """Whether `combo` is one of the set."""
        return _match_key(combo) in self._sets

    def matches_text(self, keys: str) -> bool:
        """Whether the combo written as `keys` is one of the set, however it is written."""
        return loose_names(keys) in self._sets

    def __bool__(self) -> bool:
        return bool(self._sets)


def _match_key(combo: KeyCombo) -> frozenset[str]:
    return frozenset(name.lower() if len(name) == 1 else name for name in combo.names)


# --------------------------------------------------------------------------- pyautogui

_PYAUTOGUI_NAMES = {
    "escape": "esc",
    "menu": "apps",
    " ": "space",
    "\t": "tab",
    "\n": "enter",
}


def to_pyautogui(combo: KeyCombo, *, platform: str | None = None) -> list[str]:
    """The combo as pyautogui.hotkey() names: meta is 'command' on macOS, 'win' elsewhere."""
    platform = sys.platform if platform is None else platform
    meta = "command" if platform == "darwin" else "win"

    def name(part: str) -> str:
        return meta if part == "meta" else _PYAUTOGUI_NAMES.get(part, part)

    return [name(part) for part in (*combo.modifiers, combo.key)]


# --------------------------------------------------------------------------- playwright

_PLAYWRIGHT_NAMES = {
    "ctrl": "Control",
    "alt": "Alt",
    "shift": "Shift",
    "meta": "Meta",
    "enter": "Enter",
    "tab": "Tab",
    "escape": "Escape",
    "backspace": "Backspace",
    "delete": "Delete",
    "insert": "Insert",
    "home": "Home",
    "end": "End",
    "pageup": "PageUp",
    "pagedown": "PageDown",
    "up": "ArrowUp",
    "down": "ArrowDown",
    "left": "ArrowLeft",
    "right": "ArrowRight",
    "space": "Space",
    "capslock": "CapsLock",
    "menu": "ContextMenu",
    "printscreen": "PrintScreen",
    **{f"f{n}": f"F{n}" for n in range(1, 25)},
}


def to_playwright_keys(keys: str) -> str:
    """Our combo ("ctrl+a", "shift+Tab", "esc") as a Playwright key ("Control+a", ...).

    Raises ValueError naming the unknown part and the accepted names.
    """
    combo = parse_combo(keys)
    return "+".join(_PLAYWRIGHT_NAMES.get(p, p) for p in (*combo.modifiers, combo.key))

"""Key combination parsing (computers/keys.py) and its pyautogui names: no display needed."""

from __future__ import annotations

import pytest

from internvl_agent.computers.keys import KeyCombo, KeySet, parse_combo, to_pyautogui


@pytest.mark.parametrize(
    ("text", "modifiers", "key"),
    [
        ("Enter", (), "enter"),
        ("return", (), "enter"),
        ("ctrl+a", ("ctrl",), "a"),
        ("Control+A", ("ctrl",), "a"),  # a letter after a modifier is the key, not shift
        ("shift+Tab", ("shift",), "tab"),
        ("alt+F4", ("alt",), "f4"),
        ("super+l", ("meta",), "l"),
        ("cmd+shift+Q", ("shift", "meta"), "q"),
        ("Shift+Ctrl+Alt+Delete", ("ctrl", "alt", "shift"), "delete"),
        ("ctrl+alt+del", ("ctrl", "alt"), "delete"),
        ("Page_Down", (), "pagedown"),
        ("Arrow-Up", (), "up"),
        ("esc", (), "escape"),
        ("ctrl++", ("ctrl",), "+"),
        ("+", (), "+"),
        ("ctrl+plus", ("ctrl",), "+"),
        ("A", (), "A"),  # alone, a capital letter stays one
        ("shift", (), "shift"),
        ("super", (), "meta"),
        (" ctrl + c ", ("ctrl",), "c"),
        ("F12", (), "f12"),
    ],
)
def test_parse_combo(text: str, modifiers: tuple[str, ...], key: str) -> None:
    assert parse_combo(text) == KeyCombo(modifiers, key)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no key given"),
        ("ctrl+", "empty part"),
        ("ctrl+foo", "unknown key 'foo'"),
        ("hyper+a", "unknown key 'hyper'"),
        ("a+b", "'a' in 'a+b' is not a modifier"),
        ("enter+ctrl", "'enter' in 'enter+ctrl' is not a modifier"),
    ],
)
def test_parse_combo_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="accepted:") as info:
        parse_combo(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "platform", "names"),
    [
        ("ctrl+a", "linux", ["ctrl", "a"]),
        ("super+l", "linux", ["win", "l"]),
        ("cmd+v", "darwin", ["command", "v"]),
        ("win+r", "win32", ["win", "r"]),
        ("Escape", "linux", ["esc"]),
        ("menu", "linux", ["apps"]),
        ("shift+Tab", "linux", ["shift", "tab"]),
        ("ctrl+alt+Delete", "linux", ["ctrl", "alt", "delete"]),
        ("pgup", "linux", ["pageup"]),
    ],
)
def test_to_pyautogui(text: str, platform: str, names: list[str]) -> None:
    assert to_pyautogui(parse_combo(text), platform=platform) == names


def test_keyset_matches_order_case_and_aliases() -> None:
    blocked = KeySet(["ctrl+alt+delete", "meta+l", "alt+F4"])
    assert blocked.matches(parse_combo("Alt+Ctrl+Delete"))
    assert blocked.matches(parse_combo("alt+ctrl+del"))
    assert blocked.matches(parse_combo("Super+L"))
    assert blocked.matches(parse_combo("win+l"))
    assert blocked.matches(parse_combo("ALT+f4"))
    assert not blocked.matches(parse_combo("shift+super+l"))  # another combination
    assert not blocked.matches(parse_combo("l"))
    assert not KeySet([])


def test_keyset_rejects_bad_entries() -> None:
    with pytest.raises(ValueError, match="unknown key 'deleet'"):
        KeySet(["ctrl+alt+deleet"])

"""JSON-schema pieces shared by the exact action schemas (actions.py: what decoding and
validation enforce) and the shorter views of them that models read (chat/schema_view.py)."""

from __future__ import annotations

from typing import Any

BLANK_CLASS = (
    "\\u0009-\\u000d\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
"""A regex class of exactly the characters for which str.isspace() is true."""
NON_BLANK_PATTERN = f"^[\\s\\S]*[^{BLANK_CLASS}][\\s\\S]*$"
"""A string with at least one character that str.strip() keeps (anchored at both ends:
xgrammar matches a pattern against the whole string, llguidance and JSON Schema search it)."""

DOCUMENTATION_KEYS = ("title", "description", "default")
NULL = {"type": "null"}


def undocumented(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` without its title, description and default."""
    return {k: v for k, v in schema.items() if k not in DOCUMENTATION_KEYS}


def non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A property's schema without its null branch and without documentation (what a
    branch of alternatives that requires the property says of it)."""
    options = [o for o in schema.get("anyOf", [schema]) if o != NULL]
    return undocumented(options[0] if len(options) == 1 else {"anyOf": options})

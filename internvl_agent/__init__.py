"""internvl-agent: InternVL vision-language models as LangChain chat models and GUI agents.

Heavy modules (torch, transformers, playwright) load only when the names that need them are
first used, so `import internvl_agent` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "ChatInternVL": "internvl_agent.chat.chat_model",
    "GUIAgent": "internvl_agent.agent.agent",
    "AgentResult": "internvl_agent.agent.agent",
    "create_gui_agent": "internvl_agent.agent.agent",
    "BrowserComputer": "internvl_agent.computers.browser",
    "DesktopComputer": "internvl_agent.computers.desktop",
    "ground": "internvl_agent.grounding",
    "aground": "internvl_agent.grounding",
    "GroundingResult": "internvl_agent.grounding",
    "action_tools": "internvl_agent.actions",
    "parse_action": "internvl_agent.actions",
    "RunRecorder": "internvl_agent.records",
    "register_model": "internvl_agent.engine.engine",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'internvl_agent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

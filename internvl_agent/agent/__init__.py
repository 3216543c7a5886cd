"""The GUI agent: a vision-language chat model acting on a Computer through tool calls."""

from internvl_agent.agent.agent import (
    NODES,
    AgentResult,
    AgentStatus,
    GUIAgent,
    bind_action_tools,
    create_gui_agent,
)
from internvl_agent.agent.history import HistoryEntry
from internvl_agent.agent.safety import DEFAULT_RISKY_KEYS, DomainPolicy, RiskyKeys, Secrets

__all__ = [
    "DEFAULT_RISKY_KEYS",
    "NODES",
    "AgentResult",
    "AgentStatus",
    "DomainPolicy",
    "GUIAgent",
    "HistoryEntry",
    "RiskyKeys",
    "Secrets",
    "bind_action_tools",
    "create_gui_agent",
]

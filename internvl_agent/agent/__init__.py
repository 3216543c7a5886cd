"""The GUI agent: a vision-language chat model acting on a Computer through tool calls."""

from internvl_agent.agent.agent import AgentResult, AgentStatus, GUIAgent, bind_action_tools
from internvl_agent.agent.history import HistoryEntry
from internvl_agent.agent.safety import DEFAULT_RISKY_KEYS, DomainPolicy, RiskyKeys, Secrets

__all__ = [
    "DEFAULT_RISKY_KEYS",
    "AgentResult",
    "AgentStatus",
    "DomainPolicy",
    "GUIAgent",
    "HistoryEntry",
    "RiskyKeys",
    "Secrets",
    "bind_action_tools",
]

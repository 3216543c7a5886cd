"""The GUI agent: a vision-language chat model acting on a Computer through tool calls."""

from internvl_agent.agent.loop import GUIAgent, bind_action_tools
from internvl_agent.agent.result import AgentResult, AgentStatus, HistoryEntry
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

"""The GUI agent as a LangGraph graph: stream its steps, approve risky actions by hand.

`create_gui_agent` returns a compiled LangGraph graph whose nodes are the agent's real step
(observe, decide, ground, check, act, record), with the same rules as GUIAgent (grounding,
allowed domains, secrets, loop detection, run records). Risky actions interrupt the graph;
this script asks on the terminal and resumes it with ``Command(resume=...)``:

    python examples/langgraph_browser.py [--model M] [--steps 4] [--approve-all] [--yes]

Without --model (or $INTERNVL_AGENT_MODEL) it runs a tiny random-weight checkpoint, so the
graph runs for real but the model's choices are noise. See docs/langgraph.md.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from internvl_agent.agent import create_gui_agent
from internvl_agent.computers.base import Computer
from internvl_agent.records import StepRecord

HERE = Path(__file__).resolve().parent

Decide = Callable[[dict[str, Any]], dict[str, Any]]


def build_graph(
    llm: BaseChatModel,
    computer: Computer,
    *,
    checkpointer: BaseCheckpointSaver | None = None,
    **options: Any,
):
    """The agent graph on `computer`, kept on the loopback sites (GUIAgent's options)."""
    options.setdefault("allowed_domains", ["127.0.0.1"])
    return create_gui_agent(llm, computer, checkpointer=checkpointer or InMemorySaver(), **options)


def run_task(
    graph: Any,
    task: str,
    start_url: str,
    decide: Decide,
    *,
    thread_id: str | None = None,
    show: Callable[[StepRecord], None] = print,
) -> dict[str, Any]:
    """Stream the graph to its end: each finished step goes to `show`, each interrupt to
    `decide` (its answer resumes the graph). Returns the final state."""
    config = {"configurable": {"thread_id": thread_id or uuid.uuid4().hex}}
    value: Any = {"task": task, "start_url": start_url}
    while True:
        pending = []
        for chunk in graph.stream(value, config, stream_mode="updates"):
            for node, update in chunk.items():
                if node == "__interrupt__":
                    pending += [interrupt.value for interrupt in update]
                elif node == "record":
                    show(StepRecord.model_validate(update["record"]))
        if not pending:
            return graph.get_state(config).values
        value = Command(resume=decide(pending[0]))


def terminal_decision(request: dict[str, Any]) -> dict[str, Any]:
    """Ask at the terminal: approve, reject (with a reason the model is told) or answer."""
    if request["type"] == "ask_user":
        return {"answer": input(f"The agent asks: {request['question']}\n> ")}
    print(f"The agent wants to: {request['description']} ({request['reason']})")
    print(f"  target marked on {request['screenshot']}")
    answer = input("Approve? [y/N/reason] ").strip()
    if answer.lower() in ("y", "yes"):
        return {"decision": "approve"}
    return {"decision": "reject", "message": answer or "not approved"}


def print_step(step: StepRecord) -> None:
    action = step.action.name if step.action else "no action"
    ok = "ok" if step.outcome and step.outcome.ok else "failed"
    print(f"step {step.index}: {action} {ok} {step.outcome.message if step.outcome else ''}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id or local checkpoint folder")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--approve-all", action="store_true", help="every action needs approval")
    parser.add_argument("--yes", action="store_true", help="approve without asking")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE / "webapp"))
    from serve import serve

    from internvl_agent.chat.chat_model import ChatInternVL
    from internvl_agent.computers.browser import BrowserComputer
    from internvl_agent.demo import demo_model

    llm = ChatInternVL(model=demo_model(args.model), max_tiles=2, max_tokens=128)
    decide: Decide = (lambda _request: {"decision": "approve"}) if args.yes else terminal_decision
    if not args.yes and not sys.stdin.isatty():
        decide = lambda _request: {"decision": "reject", "message": "nobody at the terminal"}  # noqa: E731
    url, server = serve(HERE / "webapp")
    try:
        with BrowserComputer() as browser:
            graph = build_graph(
                llm,
                browser,
                max_steps=args.steps,
                max_tiles=2,
                approve_every_action=args.approve_all,
                record_dir="runs",
            )
            state = run_task(graph, "Add the travel mug to the cart.", url + "shop.html", decide)
            result = state["result"]
            print(f"{result['status']}: {result['answer'] or result['error']}")
            print(f"record: {result['record_path']}")
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

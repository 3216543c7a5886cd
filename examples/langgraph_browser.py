"""The agent's action tools inside your own LangGraph graph.

GUIAgent is the ready-made loop; this example shows the pieces for people who build their own:
`action_tools()` (the tool schemas the model calls), `parse_action` (validation with
model-readable errors), `norm_to_pixels` / `ground` (0..1000 points and element descriptions
to pixels) and a Computer that executes them.

    python examples/langgraph_browser.py [--model M] [--steps 4]

Without --model (or $INTERNVL_AGENT_MODEL) it runs a tiny random-weight checkpoint, so the
graph runs for real but the model's choices are noise.
"""

from __future__ import annotations

import argparse
import operator
import sys
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph

from internvl_agent.actions import (
    BROWSER_ACTIONS,
    ActionValidationError,
    action_tools,
    execute,
    parse_action,
)
from internvl_agent.computers.base import Computer
from internvl_agent.coordinates import norm_to_pixels
from internvl_agent.grounding import ground

HERE = Path(__file__).resolve().parent


class State(TypedDict):
    messages: Annotated[list[AnyMessage], operator.add]
    screen_size: tuple[int, int]
    answer: str | None


def build_graph(llm: BaseChatModel, computer: Computer, task: str):
    """observe (screenshot) -> decide (one tool call) -> act (execute) -> observe ... -> END."""
    decider = llm.bind_tools(action_tools(BROWSER_ACTIONS), tool_choice="any")
    latest: dict[str, Any] = {}

    def observe(state: State) -> dict:
        shot = computer.screenshot()
        latest["image"] = shot.image
        content = [
            {"type": "text", "text": f"Task: {task}\nCurrent screenshot (x, y are 0..1000):"},
            shot.content_block(llm),  # the PIL image for ChatInternVL, else a PNG data URL
        ]
        return {"messages": [HumanMessage(content)], "screen_size": shot.size}

    def decide(state: State) -> dict:
        # Past steps as one line of text each, and only the newest screenshot as an image,
        # so that a step's cost does not grow with the number of steps.
        done = [m.content for m in state["messages"] if isinstance(m, ToolMessage)]
        history = "\n".join(f"{i + 1}. {text}" for i, text in enumerate(done)) or "none"
        prompt = HumanMessage(f"Outcomes of your previous actions:\n{history}")
        return {"messages": [decider.invoke([prompt, state["messages"][-1]])]}

    def act(state: State) -> dict:
        reply = state["messages"][-1]
        if not getattr(reply, "tool_calls", None):
            return {"messages": [HumanMessage("Call exactly one tool.")]}
        call = reply.tool_calls[0]
        try:
            action = parse_action(call["name"], call["args"])
        except ActionValidationError as exc:
            return {"messages": [ToolMessage(str(exc), tool_call_id=call["id"], status="error")]}
        if action.tool_name == "done":
            return {
                "answer": action.answer,
                "messages": [ToolMessage("ok", tool_call_id=call["id"])],
            }
        point = _point(action, state["screen_size"], latest.get("image"), llm)
        outcome = execute(computer, action, point=point)
        status = "success" if outcome.ok else "error"
        message = ToolMessage(outcome.message or "done", tool_call_id=call["id"], status=status)
        return {"messages": [message]}

    graph = StateGraph(State)
    graph.add_node("observe", observe)
    graph.add_node("decide", decide)
    graph.add_node("act", act)
    graph.add_edge(START, "observe")
    graph.add_edge("observe", "decide")
    graph.add_edge("decide", "act")
    graph.add_conditional_edges("act", lambda s: END if s.get("answer") else "observe")
    return graph.compile()


def _point(action: Any, size: tuple[int, int], image: Any, llm: BaseChatModel):
    """The action's target in screenshot pixels: its x/y, or its grounded element."""
    if getattr(action, "point", None) is not None:
        return norm_to_pixels(*action.point, size)
    element = getattr(action, "element", None)
    if element and image is not None:
        return ground(llm, image, element).point
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id or local checkpoint folder")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE / "webapp"))
    from serve import serve

    from internvl_agent.chat.chat_model import ChatInternVL
    from internvl_agent.computers.browser import BrowserComputer
    from internvl_agent.demo import demo_model

    llm = ChatInternVL(model=demo_model(args.model), max_tiles=2, max_tokens=128)
    url, server = serve(HERE / "webapp")
    try:
        with BrowserComputer(start_url=url + "shop.html") as browser:
            graph = build_graph(llm, browser, "Add the travel mug to the cart.")
            state = graph.invoke(
                {"messages": [], "answer": None}, {"recursion_limit": 3 * args.steps + 1}
            )
            print("answer:", state.get("answer"))
    except Exception as exc:  # the recursion limit ends runs of a model that never calls done
        print(f"stopped: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

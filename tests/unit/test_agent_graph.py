"""The agent as a LangGraph graph, without a browser: its nodes, one update per node, interrupts
for risky actions and ask_user (approve / reject / edit, langchain's decision form), the
messages convention, a state that is plain data without secrets, the async graph."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from PIL import Image

from internvl_agent.agent import NODES, AgentResult, create_gui_agent
from internvl_agent.errors import ConfigurationError
from internvl_agent.records import StepRecord
from tests.support.agent_runs import check_record
from tests.support.fakes import FakeComputer
from tests.support.scripted_model import ScriptedModel, call, done, message_text

SECRET = "hunter2-graph-s3cret"


class _Screen(FakeComputer):
    """A blank 200x100 page at http://fake.test/ that does what it is told and remembers it."""

    kind = "browser"


def _graph(script: list, tmp_path: Path, **options: Any):
    model = ScriptedModel(script=script)
    screen = _Screen()
    saver = InMemorySaver()
    graph = create_gui_agent(
        model, screen, checkpointer=saver, record_dir=tmp_path / "runs", **options
    )
    return graph, model, screen, saver


def _config(thread: str = "t1") -> dict:
    return {"configurable": {"thread_id": thread}}


def _interrupt(state: dict) -> dict:
    [pending] = state["__interrupt__"]
    return pending.value


def test_the_graph_runs_the_step_node_by_node(tmp_path: Path) -> None:
    graph, _, screen, _ = _graph([call("click", x=500, y=500), done("clicked")], tmp_path)
    assert set(NODES) <= set(graph.get_graph().nodes)
    updates = list(graph.stream({"task": "Click the middle"}, _config(), stream_mode="updates"))
    visited = [node for chunk in updates for node in chunk]
    assert visited == [
        *("start", "observe", "decide", "ground", "check", "act", "record"),
        *("observe", "decide", "record", "finish"),
    ]
    step_updates = [(n, u) for c in updates for n, u in c.items() if n not in ("start", "finish")]
    assert all(u["record"]["index"] in (1, 2) for _, u in step_updates)  # the step record
    recorded = [StepRecord.model_validate(u["record"]) for n, u in step_updates if n == "record"]
    assert [r.index for r in recorded] == [1, 2]
    assert recorded[0].action and recorded[0].action.point_px == (100, 50)
    assert recorded[0].outcome and recorded[0].outcome.ok and recorded[0].timings.capture > 0
    assert screen.done == ["click 100 50"]
    result = AgentResult.from_state(graph.get_state(_config()).values)
    assert (result.status, result.answer, result.steps) == ("done", "clicked", 2)
    lines = check_record(result)
    assert [line["index"] for line in lines] == [1, 2]


@pytest.mark.parametrize(
    "resume",
    [{"decision": "approve"}, {"decisions": [{"type": "approve"}]}, True],
    ids=["decision", "langchain-decisions", "true"],
)
def test_a_risky_key_interrupts_and_approval_runs_it(tmp_path: Path, resume: Any) -> None:
    graph, model, screen, _ = _graph([call("press_key", keys="alt+F4"), done("closed")], tmp_path)
    state = graph.invoke({"task": "Close the window"}, _config())

    request = _interrupt(state)
    assert json.loads(json.dumps(request)) == request  # JSON data
    assert request["type"] == "approve_action" and request["step"] == 1
    assert request["action"] == {"name": "press_key", "args": {"keys": "alt+F4"}}
    assert request["description"] == "press alt+F4" and "risky keys" in request["reason"]
    assert request["url"] == "http://fake.test/" and request["decisions"] == [
        "approve",
        "reject",
        "edit",
    ]
    assert request["action_requests"][0]["name"] == "press_key"
    assert request["review_configs"][0]["allowed_decisions"] == ["approve", "reject", "edit"]
    assert "keys" in request["args_schema"]["properties"]
    with Image.open(request["screenshot"]) as marked:
        assert marked.size == (200, 100) == tuple(request["screenshot_size"])
    assert screen.done == []  # nothing ran while waiting

    final = graph.invoke(Command(resume=resume), _config())
    assert screen.done == ["press alt+F4"]
    assert final["result"]["status"] == "done"
    assert "Step 1: press alt+F4 -> OK: press alt+F4" in message_text(model.step_calls[1])


def test_reject_tells_the_model_and_runs_nothing(tmp_path: Path) -> None:
    graph, model, screen, _ = _graph([call("press_key", keys="ctrl+w"), done("gave up")], tmp_path)
    graph.invoke({"task": "Close the tab"}, _config())
    final = graph.invoke(
        Command(resume={"decision": "reject", "message": "keep the tab open"}), _config()
    )
    assert screen.done == [] and final["result"]["status"] == "done"
    told = message_text(model.step_calls[1])
    assert (
        "refused: 'press ctrl+w' needs the user's confirmation and the user declined: "
        "keep the tab open" in told
    )
    [entry] = [e for e in final["history"] if e["kind"] == "action"]
    assert entry["ok"] is False


def test_edit_is_validated_like_the_models_and_runs_the_new_arguments(tmp_path: Path) -> None:
    graph, model, screen, _ = _graph(
        [call("click", x=100, y=100), done("ok")], tmp_path, approve_every_action=True
    )
    first = _interrupt(graph.invoke({"task": "Click"}, _config()))
    assert first["reason"].endswith("(approve_every_action)")
    assert first["target"]["point"] == [20, 10]

    again = graph.invoke(Command(resume={"decision": "edit", "args": {"x": 5000}}), _config())
    retry = _interrupt(again)
    assert "not valid" in retry["error"] and screen.done == []
    bad_form = _interrupt(graph.invoke(Command(resume={"decision": "maybe"}), _config()))
    assert "'decision' must be one of" in bad_form["error"]

    final = graph.invoke(
        Command(resume={"decision": "edit", "args": {"x": 1000, "y": 0}}), _config()
    )
    assert screen.done == ["click 199 0"]  # edited, located again, not asked twice
    assert final["result"]["status"] == "done"
    told = message_text(model.step_calls[1])
    assert "the user changed your action (click at (100, 100)) to click at (1000, 0)" in told
    lines = check_record(AgentResult.from_state(final))
    assert lines[0]["action"]["args"]["x"] == 1000 and lines[0]["tool_call"]["args"]["x"] == 100


def test_ask_user_interrupts_for_the_answer(tmp_path: Path) -> None:
    graph, model, _, _ = _graph(
        [call("ask_user", question="Which colour?"), done("blue")], tmp_path
    )
    request = _interrupt(graph.invoke({"task": "Pick a colour"}, _config()))
    assert request == {"type": "ask_user", "step": 1, "question": "Which colour?", "error": None}
    assert "call `ask_user`" in message_text(model.step_calls[0][:1])  # someone is there
    retry = _interrupt(graph.invoke(Command(resume=42), _config()))
    assert "cannot read the answer" in retry["error"]
    final = graph.invoke(Command(resume={"answer": "blue"}), _config())
    assert "the user answered: blue" in message_text(model.step_calls[1])
    assert final["result"]["answer"] == "blue"


def test_without_a_human_risky_actions_are_refused_without_interrupting(tmp_path: Path) -> None:
    graph, model, screen, _ = _graph(
        [call("press_key", keys="alt+F4"), call("ask_user", question="?"), done("alone")],
        tmp_path,
        human_in_the_loop=False,
    )
    final = graph.invoke({"task": "Close"}, _config())
    assert "__interrupt__" not in final and screen.done == []
    assert "nobody can confirm it in this run" in message_text(model.step_calls[1])
    assert "nobody is available to answer questions" in message_text(model.step_calls[2])


def test_the_messages_convention(tmp_path: Path) -> None:
    graph, _, _, _ = _graph([done("forty-two")], tmp_path)
    final = graph.invoke({"messages": [HumanMessage("What is the answer?")]}, _config())
    assert isinstance(final["messages"][-1], AIMessage)
    assert final["messages"][-1].content == "forty-two"
    info = json.loads((Path(final["run_dir"]) / "run.json").read_text())
    assert info["task"] == "What is the answer?"
    with pytest.raises(ConfigurationError, match="non-empty"):
        graph.invoke({"messages": []}, _config("t2"))


def test_the_state_is_plain_data_without_secret_values(tmp_path: Path) -> None:
    graph, _, _, saver = _graph(
        [call("type_text", text="<secret>pw</secret>", x=500, y=500), done(f"it was {SECRET}")],
        tmp_path,
        sensitive_data={"pw": SECRET},
    )
    request = _interrupt(graph.invoke({"task": "Log in"}, _config()))
    assert request["description"] == "type the secret(s) pw on http://fake.test/"
    final = graph.invoke(Command(resume={"decision": "approve"}), _config())
    assert final["result"]["answer"] == "it was <secret:pw>"
    checkpoints = list(saver.list(_config()))
    assert len(checkpoints) > 10
    for saved in checkpoints:
        values = dict(saved.checkpoint["channel_values"])
        values.pop("messages", None)
        json.dumps(values)  # plain JSON data (screenshots are file names)
        for _, kind, value in saved.pending_writes or []:
            assert SECRET.encode() not in saver.serde.dumps_typed(value)[1], kind
        assert SECRET.encode() not in saver.serde.dumps_typed(saved.checkpoint)[1]
    assert all(isinstance(f["path"], str) for f in final["frames"])


def test_create_gui_agent_takes_no_callbacks(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="interrupts instead"):
        create_gui_agent(ScriptedModel(), _Screen(), confirm=lambda _d: True)
    with pytest.raises(ConfigurationError, match="stream the graph"):
        create_gui_agent(ScriptedModel(), _Screen(), on_step=print)


def test_the_async_graph_interrupts_and_resumes(tmp_path: Path) -> None:
    graph, _, screen, _ = _graph([call("press_key", keys="alt+F4"), done("ok")], tmp_path)

    async def main() -> dict:
        state = await graph.ainvoke({"task": "Close"}, _config())
        assert _interrupt(state)["description"] == "press alt+F4"
        nodes = [
            node
            async for chunk in graph.astream(
                Command(resume={"decision": "approve"}), _config(), stream_mode="updates"
            )
            for node in chunk
        ]
        assert nodes == ["check", "act", "record", "observe", "decide", "record", "finish"]
        return (await graph.aget_state(_config())).values

    final = asyncio.run(main())
    assert screen.done == ["press alt+F4"] and final["result"]["status"] == "done"


def test_a_subgraph_of_a_messages_graph_with_the_parents_checkpointer(tmp_path: Path) -> None:
    from langgraph.graph import END, START, MessagesState, StateGraph

    model = ScriptedModel(script=[call("press_key", keys="alt+F4"), done("closed it")])
    screen = _Screen()
    gui = create_gui_agent(model, screen, record_dir=tmp_path / "runs")  # no checkpointer
    parent = StateGraph(MessagesState)
    parent.add_node("gui", gui)
    parent.add_edge(START, "gui")
    parent.add_edge("gui", END)
    app = parent.compile(checkpointer=InMemorySaver())

    state = app.invoke({"messages": [HumanMessage("Close the window")]}, _config())
    assert _interrupt(state)["description"] == "press alt+F4" and screen.done == []
    state = app.invoke(Command(resume={"decision": "approve"}), _config())
    assert screen.done == ["press alt+F4"]
    assert [(m.type, m.content) for m in state["messages"]] == [
        ("human", "Close the window"),
        ("ai", "closed it"),
    ]


def test_keyboard_interrupt_records_the_step_and_ends_the_run_stopped(tmp_path: Path) -> None:
    from internvl_agent.agent import GUIAgent
    from internvl_agent.records import load_run
    from tests.support.scripted_model import raising

    model = ScriptedModel(script=[call("click", x=10, y=10), raising(KeyboardInterrupt())])
    agent = GUIAgent(model, _Screen(), record_dir=tmp_path / "runs")
    with pytest.raises(KeyboardInterrupt):
        agent.run("Click twice")
    [run_dir] = (tmp_path / "runs").iterdir()
    data = load_run(run_dir)
    assert data.info.status == "stopped" and data.info.error == "interrupted (KeyboardInterrupt)"
    assert [s.index for s in data.steps] == [1, 2]
    assert data.steps[1].error == "interrupted (KeyboardInterrupt)"
    assert agent.run("Again").status == "error"  # the agent is free again (script exhausted)

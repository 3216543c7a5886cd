"""The agent graph in real Chromium on the example web app: an approval interrupt resumed in
another process through a file-based checkpointer (SqliteSaver), and the tiny ChatInternVL
checkpoint driving the graph with every action put up for approval."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from internvl_agent.agent import AgentResult, create_gui_agent
from internvl_agent.computers.browser import BrowserComputer
from internvl_agent.records import StepRecord, load_run
from tests.support.agent_runs import check_record
from tests.support.browser import needs_browser
from tests.support.scripted_model import ScriptedModel, call

ROOT = Path(__file__).resolve().parents[2]
sqlite_saver = pytest.importorskip(
    "langgraph.checkpoint.sqlite", reason="needs langgraph-checkpoint-sqlite (the test extra)"
)

# Process B: a new browser and a new model (the rest of the script) resume the thread.
RESUME = textwrap.dedent(
    """
    import json, sqlite3, sys
    sys.path.insert(0, sys.argv[1])
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.types import Command
    from internvl_agent.agent import create_gui_agent
    from internvl_agent.computers.browser import BrowserComputer
    from tests.support.scripted_model import ScriptedModel, done

    database, record_dir = sys.argv[2], sys.argv[3]
    with BrowserComputer(viewport=(1000, 700)) as browser:
        model = ScriptedModel(computer=browser, script=[done(answer_from="h1")])
        saver = SqliteSaver(sqlite3.connect(database, check_same_thread=False))
        graph = create_gui_agent(model, browser, checkpointer=saver, record_dir=record_dir)
        config = {"configurable": {"thread_id": "shop-run"}}
        nodes = [
            node
            for chunk in graph.stream(
                Command(resume={"decision": "approve"}), config, stream_mode="updates"
            )
            for node in chunk
        ]
        state = graph.get_state(config).values
        print(json.dumps({
            "nodes": nodes,
            "url": browser.current_url(),
            "result": state["result"],
            "history": state["history"],
        }))
    """
)


@needs_browser
def test_an_approval_is_resumed_in_another_process(site: str, tmp_path: Path) -> None:
    shop = site.replace("127.0.0.1", "localhost") + "shop.html"  # a site not visited yet
    database, record_dir = tmp_path / "checkpoints.sqlite", tmp_path / "runs"
    config = {"configurable": {"thread_id": "shop-run"}}
    with BrowserComputer(viewport=(1000, 700)) as browser:
        model = ScriptedModel(computer=browser, script=[call("navigate", url=shop)])
        saver = sqlite_saver.SqliteSaver(sqlite3.connect(database, check_same_thread=False))
        graph = create_gui_agent(model, browser, checkpointer=saver, record_dir=record_dir)
        state = graph.invoke({"task": "Open the shop", "start_url": site}, config)
        [pending] = state["__interrupt__"]
        assert pending.value["description"] == f"open {shop}, a site not visited yet"
        assert Path(pending.value["screenshot"]).is_file()
        assert browser.current_url() == site  # nothing ran
    run_dir = Path(state["run_dir"])
    assert not load_run(run_dir).finished

    out = subprocess.run(
        [sys.executable, "-c", RESUME, str(ROOT), str(database), str(record_dir)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = json.loads(out.stdout.strip().splitlines()[-1])
    # the check node reruns with the answer; the new browser is brought to the step's page
    assert resumed["nodes"] == ["check", "act", "record", "observe", "decide", "record", "finish"]
    assert resumed["url"] == shop
    assert resumed["result"]["status"] == "done" and resumed["result"]["answer"] == "Shop"
    notes = [e["message"] for e in resumed["history"] if e["kind"] == "note"]
    assert notes == [
        f"the run was resumed in another session: the agent reopened {site} and captured "
        "the screen again before going on"
    ]
    result = AgentResult.from_state({"result": resumed["result"], "history": resumed["history"]})
    lines = check_record(result)
    assert [line["index"] for line in lines] == [1, 2]
    assert lines[0]["action"]["name"] == "navigate" and lines[0]["outcome"]["ok"] is True
    assert (run_dir / "step-001-approval.png").is_file()


@needs_browser
def test_the_tiny_checkpoint_drives_the_graph(site: str, tiny_checkpoint: Path, tmp_path) -> None:
    from internvl_agent.chat.chat_model import ChatInternVL

    llm = ChatInternVL(model=str(tiny_checkpoint), device="cpu", max_tiles=1, max_tokens=256)
    config = {"configurable": {"thread_id": "tiny"}}
    with BrowserComputer(viewport=(800, 600)) as browser:
        graph = create_gui_agent(
            llm,
            browser,
            checkpointer=InMemorySaver(),
            record_dir=tmp_path / "runs",
            allowed_domains=["127.0.0.1"],
            approve_every_action=True,
            actions=["scroll", "wait", "done"],  # no ask_user, no navigation: each is put up
            max_steps=3,
            max_tiles=1,
        )
        value: object = {"task": "Search for lamps", "start_url": site + "search.html"}
        nodes: list[str] = []
        records: list[StepRecord] = []
        requests: list[dict] = []
        for _ in range(10):  # each approval resumes the graph once
            for chunk in graph.stream(value, config, stream_mode="updates"):
                for node, update in chunk.items():
                    nodes.append(node)
                    if node == "__interrupt__":
                        requests += [pending.value for pending in update]
                    elif node == "record":
                        records.append(StepRecord.model_validate(update["record"]))
            if nodes[-1] != "__interrupt__":
                break
            json.dumps(requests[-1])
            value = Command(resume={"decision": "reject", "message": "just looking"})
    state = graph.get_state(config).values
    result = AgentResult.from_state(state)
    assert nodes[:3] == ["start", "observe", "decide"] and nodes[-1] == "finish"
    assert result.status in ("done", "failed", "max_steps", "error")
    assert [r.index for r in records] == list(range(1, result.steps + 1))
    assert all(r.raw_model_output or r.error for r in records)
    acted = [r for r in records if r.action is not None and r.action.name != "done"]
    assert len(requests) == len(acted) >= 1  # every action the noise model chose was put up
    for request, record in zip(requests, acted, strict=True):
        assert request["type"] == "approve_action" and request["step"] == record.index
        assert request["action"]["name"] == record.action.name  # type: ignore[union-attr]
        assert Path(request["screenshot"]).is_file()
        assert record.outcome is not None and not record.outcome.ok
        assert "the user declined: just looking" in record.outcome.message
    check_record(result)

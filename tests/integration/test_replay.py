"""Replay end to end: record a run on the example web app, replay it unchanged, then replay
it on a copy of the app whose Sign in button moved (stops at that step, or re-grounds)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from internvl_agent.agent import GUIAgent
from internvl_agent.cli import REPLAY_EXIT_CODES, app
from internvl_agent.computers.browser import BrowserComputer
from internvl_agent.errors import ConfigurationError
from internvl_agent.records import load_run
from internvl_agent.replay import DEFAULT_THRESHOLD, replay_run
from tests.support.agent_runs import check_record
from tests.support.browser import WEBAPP, load_webapp_serve, skip_without_browser
from tests.support.scripted_model import ScriptedModel, click, done, type_into

VIEWPORT = (1000, 720)
PASSWORD = "pass-w0rd-42"  # never in the record: only <secret:pw>
ELEMENTS = {"the Password field": "#password", "the Sign in button": "#login-button"}


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserComputer]:
    skip_without_browser()
    with BrowserComputer(viewport=VIEWPORT) as computer:
        yield computer


@pytest.fixture(scope="module")
def moved_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A copy of the web app whose Sign in button is 240 px lower (its own origin)."""
    folder = tmp_path_factory.mktemp("moved")
    shutil.copytree(WEBAPP, folder, dirs_exist_ok=True)
    page = (folder / "index.html").read_text(encoding="utf-8")
    moved = page.replace(
        '<button type="submit" id="login-button">',
        '<button type="submit" id="login-button" style="margin-top:240px">',
    )
    assert moved != page
    (folder / "index.html").write_text(moved, encoding="utf-8")
    url, server = load_webapp_serve().serve(folder)
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def recorded(browser: BrowserComputer, site: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run: username by coordinates, the secret password and the button grounded."""
    model = ScriptedModel(
        computer=browser,
        script=[
            type_into("#username", "alice"),
            type_into(None, "<secret>pw</secret>", element="the Password field"),
            click(element="the Sign in button"),
            done(answer_from="#status"),
        ],
        elements=ELEMENTS,
    )
    agent = GUIAgent(
        model,
        browser,
        allowed_domains=["127.0.0.1"],
        sensitive_data={"pw": PASSWORD},
        record_dir=tmp_path_factory.mktemp("runs"),
    )
    result = agent.run("Sign in as alice", start_url=site)
    assert result.status == "done" and result.answer == "Welcome, alice", result.error
    check_record(result)
    assert result.record_path is not None
    assert PASSWORD not in (result.record_path / "steps.jsonl").read_text()
    return result.record_path


def _grounder(browser: BrowserComputer) -> ScriptedModel:
    return ScriptedModel(computer=browser, elements=ELEMENTS)


def test_replay_of_an_unchanged_page_matches_every_step(
    browser: BrowserComputer, recorded: Path, tmp_path: Path
) -> None:
    result = replay_run(recorded, browser, secrets={"pw": PASSWORD}, record_dir=tmp_path)

    assert result.status == "done" and result.matched, result.reason
    assert [s.verdict for s in result.steps] == ["matched", "matched", "matched", "done"]
    diffs = [s.difference for s in result.steps[:3]]
    assert all(d is not None and d < DEFAULT_THRESHOLD for d in diffs), diffs
    assert browser.page.locator("#status").inner_text() == "Welcome, alice"
    assert browser.page.input_value("#password") == PASSWORD  # typed from the secret given

    path = result.record_path
    assert path is not None and path.parent == tmp_path
    run = load_run(path)
    assert run.info.status == "done" and len(run.steps) == 4 and not run.problems
    assert run.info.meta["replay_of"]["run_id"] == load_run(recorded).info.id
    assert run.info.meta["allowed_domains"] == ["127.0.0.1"]
    assert "ctrl+w" in run.info.meta["risky_keys"]  # the run's risky keys, from its meta
    replay = json.loads((path / "replay.json").read_text())
    assert replay["format"] == "internvl-agent-replay/1" and replay["status"] == "done"
    assert [s["source_index"] for s in replay["steps"]] == [1, 2, 3, 4]
    for name in ("steps.jsonl", "replay.json", "run.json", "report.html"):
        assert PASSWORD not in (path / name).read_text(), name
    report = (path / "report.html").read_text()
    assert 'id="replay"' in report and report.count('class="replay-row"') == 4


def test_replay_after_the_button_moved_stops_at_that_step(
    browser: BrowserComputer, recorded: Path, moved_site: str, tmp_path: Path
) -> None:
    result = replay_run(
        recorded, browser, start_url=moved_site, secrets={"pw": PASSWORD}, record_dir=tmp_path
    )

    assert result.status == "changed"
    assert result.stopped_at == 3  # the click on the Sign in button
    assert [s.verdict for s in result.steps] == ["matched", "matched", "changed"]
    changed = result.steps[-1]
    assert changed.difference is not None and changed.difference > DEFAULT_THRESHOLD
    assert "patch difference" in (result.reason or "")
    assert browser.page.locator("#status").inner_text() == ""  # the click was not made
    assert browser.current_url().startswith(moved_site)  # recorded URLs rebased
    report = (result.record_path / "report.html").read_text()  # type: ignore[operator]
    assert 'data-verdict="changed"' in report and "stopped at recorded" in report


def test_replay_after_the_button_moved_recovers_by_regrounding(
    browser: BrowserComputer, recorded: Path, moved_site: str, tmp_path: Path
) -> None:
    grounder = _grounder(browser)
    result = replay_run(
        recorded,
        browser,
        grounder=grounder,
        start_url=moved_site,
        secrets={"pw": PASSWORD},
        record_dir=tmp_path,
    )

    assert result.status == "done", result.reason
    assert [s.verdict for s in result.steps] == ["matched", "regrounded", "regrounded", "done"]
    assert grounder.grounding_calls == ["the Password field", "the Sign in button"]
    moved = result.steps[2]
    assert moved.point_used != moved.point_recorded  # found lower down...
    assert moved.difference is not None and moved.difference < DEFAULT_THRESHOLD  # ...unchanged
    assert browser.page.locator("#status").inner_text() == "Welcome, alice"


def test_replay_continue_on_change_goes_on_and_reports(
    browser: BrowserComputer, recorded: Path, moved_site: str, tmp_path: Path
) -> None:
    result = replay_run(
        recorded,
        browser,
        start_url=moved_site,
        secrets={"pw": PASSWORD},
        record_dir=tmp_path,
        continue_on_change=True,
    )
    assert result.status == "changed" and result.stopped_at is None
    assert [s.verdict for s in result.steps] == ["matched", "matched", "changed", "done"]


def test_replay_needs_the_secrets_again(browser: BrowserComputer, recorded: Path) -> None:
    with pytest.raises(ConfigurationError, match="--secret pw=ENV_VAR"):
        replay_run(recorded, browser)


def test_replay_keeps_the_runs_allowed_domains(
    browser: BrowserComputer, recorded: Path, site: str
) -> None:
    with pytest.raises(ConfigurationError, match="outside the run's allowed domains"):
        replay_run(
            recorded,
            browser,
            start_url=site.replace("127.0.0.1", "localhost"),
            secrets={"pw": PASSWORD},
        )


def test_replay_command(recorded: Path, moved_site: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REPLAY_PW", PASSWORD)
    runner = CliRunner()
    base = ["replay", str(recorded), "--secret", "pw=REPLAY_PW", "--record", str(tmp_path)]
    same = runner.invoke(app, base)
    assert same.exit_code == 0, same.output
    assert "done after 4 step(s)" in same.output
    moved = runner.invoke(app, [*base, "--url", moved_site])
    assert moved.exit_code == REPLAY_EXIT_CODES["changed"], moved.output
    assert "stopped:" in moved.output and "recorded step 3" in moved.output
    missing = runner.invoke(app, ["replay", str(recorded)])
    assert missing.exit_code == 2 and "--secret pw=ENV_VAR" in missing.output

"""report.html: a single self-contained file replaying one recorded run.

Screenshots (the marked copies) are embedded as data URLs so the file can be mailed; when
they would make the file larger than ``max_embed_bytes`` they are linked relatively instead
and the page says so. Everything from the run is untrusted (model output above all): the page
is rendered from ``templates/report.html.j2`` by jinja2 with autoescaping on, the step data
travels as JSON in a ``<script type="application/json">`` block (jinja's ``tojson``: ``<``,
``>``, ``&`` and ``'`` escaped), the page's script (``templates/report.js``) only ever sets
``textContent``, and a Content-Security-Policy allows no script but that one (by hash).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from internvl_agent.records import REPORT_FILE, RUNNING, atomic_write, load_run

MAX_EMBED_BYTES = 50_000_000
REPLAY_FILE = "replay.json"  # a replay's verdict per step (see replay.py), beside run.json
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("internvl_agent", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
# tojson: the run data as JSON inside <script> (``<``, ``>``, ``&``, ``'`` escaped), in order.
_ENV.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}


def write_report(
    run_dir: str | Path,
    *,
    max_embed_bytes: int = MAX_EMBED_BYTES,
) -> Path:
    """Write ``run_dir/report.html`` from run.json and steps.jsonl and return its path.

    Works for finished, failed, crashed (status still "running") and empty runs. The record
    is already redacted (the agent redacts what it records), so the report is too.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    info = run.info.model_dump(mode="json")
    steps = [s.model_dump(mode="json") for s in run.steps]
    problems = list(run.problems)

    images = [_image_file(run_dir, s) for s in steps]
    embedded_size = sum(p.stat().st_size * 4 // 3 for p in images if p is not None)
    embed = embedded_size <= max_embed_bytes
    for step, img in zip(steps, images, strict=True):
        step["image"] = None if img is None else (_data_url(img) if embed else quote(img.name))

    replay = _replay_view(run_dir, problems)
    page = _render(info, steps, problems, embed, embedded_size, replay)
    out = run_dir / REPORT_FILE
    atomic_write(out, page.encode("utf-8"))
    return out


def _image_file(run_dir: Path, step: dict[str, Any]) -> Path | None:
    """The marked screenshot of a step, else the raw one, else None."""
    for key in ("marked_screenshot", "screenshot"):
        name = step.get(key)
        if name and (run_dir / Path(name).name).is_file():
            return run_dir / Path(name).name
    return None


def _data_url(path: Path) -> str:
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "—"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def _render(
    info: dict[str, Any],
    steps: list[dict[str, Any]],
    problems: list[str],
    embedded: bool,
    image_bytes: int,
    replay: dict[str, Any] | None = None,
) -> str:
    meta = info.get("meta") or {}
    status = str(info.get("status") or "")
    totals = info.get("totals") or {}
    script = _ENV.loader.get_source(_ENV, "report.js")[0]  # type: ignore[union-attr]
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    model_time = totals.get("model", 0) + totals.get("grounding_model", 0)
    return _ENV.get_template("report.html.j2").render(
        csp="default-src 'none'; img-src 'self' data: file:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'",
        task=str(info.get("task") or ""),
        run_id=str(info.get("id") or ""),
        status=status,
        status_class=_status_class(status),
        facts=[
            ("Duration", _fmt_seconds(info.get("duration_s"))),
            ("Model", str(meta.get("model", "—"))),
            ("Computer", str(meta.get("computer", "—"))),
            ("Started", str(info.get("started_at") or "—")),
            ("Model time", _fmt_seconds(model_time)),
            ("Framework overhead", _fmt_seconds(totals.get("framework_overhead"))),
        ],
        meta=[
            (str(k), v if isinstance(v, str) else json.dumps(v))
            for k, v in meta.items()
            if k not in ("model", "computer")
        ],
        running=status == RUNNING,
        answer=None if info.get("answer") is None else str(info["answer"]),
        error=str(info["error"]) if info.get("error") else None,
        embedded=embedded,
        image_bytes=image_bytes,
        problems=problems,
        items=[
            {
                "index": str(s.get("index")),
                "label": _step_label(s),
                "seconds": _fmt_seconds((s.get("timings") or {}).get("total")),
                "bad": _failed(s),
            }
            for s in steps
        ],
        data={"run": info, "steps": steps},
        script=script,
        replay=replay,
    )


def _replay_view(run_dir: Path, problems: list[str]) -> dict[str, Any] | None:
    """What the report shows of a replay's replay.json (None for an ordinary run)."""
    path = run_dir / REPLAY_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        source = data.get("source") or {}
        rows = [
            {
                "index": str(s.get("index", "")),
                "source_index": str(s.get("source_index", "")),
                "action": str(s.get("action", "")),
                "verdict": str(s.get("verdict", "")),
                "ok": s.get("verdict") in ("matched", "regrounded", "done", "skipped"),
                "difference": "—" if s.get("difference") is None else f"{s['difference']:.3f}",
                "reason": str(s.get("reason") or ""),
            }
            for s in data.get("steps") or []
        ]
        return {
            "source_id": str(source.get("run_id", "")),
            "source_path": str(source.get("path", "")),
            "source_task": str(source.get("task", "")),
            "summary": str(data.get("summary") or ""),
            "stopped_at": None if data.get("stopped_at") is None else str(data["stopped_at"]),
            "reason": str(data.get("reason") or ""),
            "threshold": str(data.get("threshold", "")),
            "rows": rows,
        }
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        problems.append(f"{REPLAY_FILE}: unreadable ({exc})")
        return None


def _status_class(status: str) -> str:
    if status in ("done", "success", "succeeded", "completed"):
        return "ok"
    if status == RUNNING:
        return "warn"
    return "bad"


def _failed(step: dict[str, Any]) -> bool:
    outcome = step.get("outcome") or {}
    return bool(step.get("error")) or outcome.get("ok") is False


def _step_label(step: dict[str, Any]) -> str:
    action = step.get("tool_call") or step.get("action")  # the model's intent reads best
    if not action:
        return "error" if step.get("error") else "(no action)"
    args = action.get("args") or {}
    first = next(iter(args.values()), None) if args else None
    detail = f" {json.dumps(first, ensure_ascii=False)[:40]}" if first is not None else ""
    return f"{action.get('name', '?')}{detail}"

"""report.html: a single self-contained file replaying one recorded run.

Screenshots (the marked copies) are embedded as data URLs so the file can be mailed; when
they would make the file larger than ``max_embed_bytes`` they are linked relatively instead
and the page says so. Everything from the run is untrusted (model output above all): the
header is built with ``html.escape``, the step data travels as JSON in a
``<script type="application/json">`` block with ``<``, ``>`` and ``&`` escaped, the page's
script only ever sets ``textContent``, and a Content-Security-Policy allows no script but
the page's own (by hash).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from internvl_agent.records import REPORT_FILE, RUNNING, atomic_write, load_run

MAX_EMBED_BYTES = 50_000_000
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


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

    page = _render(info, steps, problems, embed, embedded_size)
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


def _json_for_script(data: Any) -> str:
    """JSON safe inside a <script> element: no ``<``, ``>`` or ``&`` appear literally."""
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


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
) -> str:
    e = html.escape
    meta = info.get("meta") or {}
    status = str(info.get("status") or "")
    totals = info.get("totals") or {}
    n = len(steps)

    facts = [
        ("Status", f'<span class="badge {_status_class(status)}">{e(status)}</span>'),
        ("Steps", f'<span id="step-count">{n}</span>'),
        ("Duration", e(_fmt_seconds(info.get("duration_s")))),
        ("Model", e(str(meta.get("model", "—")))),
        ("Computer", e(str(meta.get("computer", "—")))),
        ("Started", e(str(info.get("started_at") or "—"))),
        ("Model time", e(_fmt_seconds(totals.get("model", 0) + totals.get("grounding_model", 0)))),
        ("Framework overhead", e(_fmt_seconds(totals.get("framework_overhead")))),
    ]
    facts_html = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    other_meta = {k: v for k, v in meta.items() if k not in ("model", "computer")}
    meta_html = "".join(
        f"<div><dt>{e(str(k))}</dt><dd>{e(v if isinstance(v, str) else json.dumps(v))}</dd></div>"
        for k, v in other_meta.items()
    )

    notes: list[str] = []
    if status == RUNNING:
        notes.append(
            '<p class="note warn">This run never finished: it is still going, or its process '
            "died. Every step completed before that is shown.</p>"
        )
    if info.get("answer") is not None:
        notes.append(f'<div class="answer"><h2>Answer</h2><p>{e(str(info["answer"]))}</p></div>')
    if info.get("error"):
        notes.append(
            f'<div class="error" id="run-error"><h2>Error</h2>'
            f"<pre>{e(str(info['error']))}</pre></div>"
        )
    if not embedded:
        notes.append(
            f'<p class="note" id="linked-note">Screenshots are linked, not embedded (they would '
            f"add {image_bytes / 1e6:.0f} MB): keep this file in its run folder.</p>"
        )
    notes.extend(f'<p class="note warn">{e(p)}</p>' for p in problems)

    items = "".join(
        f'<li><button type="button" class="step-item{_item_class(s)}" data-i="{i}">'
        f'<span class="n">{e(str(s.get("index")))}</span>'
        f'<span class="what">{e(_step_label(s))}</span>'
        f'<span class="t">{e(_fmt_seconds((s.get("timings") or {}).get("total")))}</span>'
        f"</button></li>"
        for i, s in enumerate(steps)
    )
    if not steps:
        items = '<li class="empty">No steps were recorded.</li>'

    data = {"run": info, "steps": steps}
    script = _SCRIPT
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (
        "default-src 'none'; img-src 'self' data: file:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'"
    )
    task = str(info.get("task") or "")
    return _PAGE.format(
        csp=e(csp),
        title=e(f"Run: {task[:80]}"),
        css=_CSS,
        task=e(task),
        run_id=e(str(info.get("id") or "")),
        facts=facts_html,
        meta=f'<dl class="meta">{meta_html}</dl>' if meta_html else "",
        notes="".join(notes),
        items=items,
        disabled=" disabled" if not steps else "",
        data=_json_for_script(data),
        script=script,
    )


def _status_class(status: str) -> str:
    if status in ("done", "success", "succeeded", "completed"):
        return "ok"
    if status == RUNNING:
        return "warn"
    return "bad"


def _item_class(step: dict[str, Any]) -> str:
    outcome = step.get("outcome") or {}
    return " bad" if step.get("error") or outcome.get("ok") is False else ""


def _step_label(step: dict[str, Any]) -> str:
    action = step.get("tool_call") or step.get("action")  # the model's intent reads best
    if not action:
        return "error" if step.get("error") else "(no action)"
    args = action.get("args") or {}
    first = next(iter(args.values()), None) if args else None
    detail = f" {json.dumps(first, ensure_ascii=False)[:40]}" if first is not None else ""
    return f"{action.get('name', '?')}{detail}"


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header>
<p class="kicker">internvl-agent run <code>{run_id}</code></p>
<h1 id="task">{task}</h1>
<dl class="facts">{facts}</dl>
{meta}
{notes}
</header>
<main>
<nav aria-label="Steps"><ol id="steps">{items}</ol></nav>
<section id="player" data-step="">
<div class="controls">
<button type="button" id="prev" title="Previous step (←)"{disabled}>&larr; Prev</button>
<span id="step-pos">No steps</span>
<button type="button" id="next" title="Next step (→)"{disabled}>Next &rarr;</button>
<button type="button" id="play" title="Autoplay (space)"{disabled}>&#9654; Play</button>
<label>every <select id="speed"><option value="800">0.8 s</option>
<option value="1500" selected>1.5 s</option><option value="3000">3 s</option></select></label>
</div>
<figure><img id="shot" alt="Screenshot of the current step"><figcaption id="shot-caption">
</figcaption></figure>
<div id="details"></div>
</section>
</main>
<footer>Keys: &larr; &rarr; step, Home/End first/last, space play/pause.
Click the screenshot to toggle actual size.</footer>
<script type="application/json" id="run-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""

_CSS = """
:root{--fg:#1d2430;--mut:#5b6575;--bg:#f6f7f9;--card:#fff;--line:#dfe3ea;--acc:#2456d6;
--ok:#137a3a;--bad:#c0262d;--warn:#9a6300}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
header{background:var(--card);border-bottom:1px solid var(--line);padding:18px 24px}
.kicker{margin:0;color:var(--mut);font-size:12px;text-transform:uppercase;letter-spacing:.05em}
.kicker code{text-transform:none;letter-spacing:0}
h1{margin:4px 0 12px;font-size:20px;font-weight:600;white-space:pre-wrap;word-break:break-word}
h2{font-size:13px;margin:0 0 4px;text-transform:uppercase;letter-spacing:.04em;color:var(--mut)}
dl{margin:0}
.facts,.meta{display:flex;flex-wrap:wrap;gap:8px 28px}
.meta{margin-top:8px;font-size:12px}
dt{color:var(--mut);font-size:12px}dd{margin:0;font-weight:500}
.badge{display:inline-block;padding:0 8px;border-radius:10px;color:#fff;font-size:12px}
.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}.badge.warn{background:var(--warn)}
.answer,.error{margin-top:12px;padding:10px 12px;border-radius:6px}
.answer{background:#eef6f0;border:1px solid #bfe0c9}
.error{background:#fdeeee;border:1px solid #f0c2c4}
.answer p{margin:0;white-space:pre-wrap}
.note{margin:10px 0 0;padding:6px 10px;border-radius:6px;background:#eef2fb}
.note.warn{background:#fff5e0}
pre{margin:0;white-space:pre-wrap;word-break:break-word;font:12px/1.4 ui-monospace,Menlo,
Consolas,monospace}
main{display:grid;grid-template-columns:260px 1fr;gap:16px;padding:16px 24px}
@media (max-width:900px){main{grid-template-columns:1fr}}
nav{background:var(--card);border:1px solid var(--line);border-radius:8px;max-height:80vh;
overflow:auto}
ol{list-style:none;margin:0;padding:4px}
.empty{padding:12px;color:var(--mut)}
.step-item{display:flex;gap:8px;width:100%;text-align:left;border:0;background:none;
padding:6px 8px;border-radius:5px;cursor:pointer;font:inherit;color:inherit}
.step-item:hover{background:#eef1f6}
.step-item[aria-current]{background:#dde7fb}
.step-item .n{min-width:24px;color:var(--mut);font-variant-numeric:tabular-nums}
.step-item .what{flex:1;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.step-item .t{color:var(--mut);font-size:12px}
.step-item.bad .what{color:var(--bad)}
#player{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px;
min-width:0}
.controls{display:flex;align-items:center;gap:8px;flex-wrap:wrap;margin-bottom:10px}
.controls button,select{font:inherit;padding:4px 12px;border:1px solid var(--line);
border-radius:6px;background:#fff;cursor:pointer}
.controls button:disabled{opacity:.45;cursor:default}
#play.on{background:var(--acc);color:#fff;border-color:var(--acc)}
#step-pos{min-width:110px;text-align:center;font-weight:600}
.controls label{color:var(--mut);margin-left:auto}
figure{margin:0;background:#20242c;border-radius:6px;overflow:auto;text-align:center}
#shot{max-width:100%;display:block;margin:0 auto;cursor:zoom-in}
#shot.actual{max-width:none;cursor:zoom-out}
#shot:not([src]){display:none}
figcaption{color:#c9ced8;font-size:12px;padding:4px 8px;text-align:left}
#details{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:10px;
margin-top:12px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 10px;min-width:0}
.card.wide{grid-column:1/-1}
.card.bad{border-color:#f0c2c4;background:#fdeeee}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;font-size:13px}
.kv span:nth-child(odd){color:var(--mut)}
.ok-t{color:var(--ok);font-weight:600}.bad-t{color:var(--bad);font-weight:600}
.bar{display:flex;height:8px;border-radius:4px;overflow:hidden;background:#e8ebf0;margin:6px 0}
.bar i{display:block;height:100%}
.c-model{background:#2456d6}.c-grounding_model{background:#7b4fd6}.c-capture{background:#2a9d8f}
.c-grounding{background:#e9a23b}.c-action{background:#d65a4f}.c-other{background:#9aa3b2}
.sw{display:inline-block;width:9px;height:9px;border-radius:2px;margin-right:5px}
.msgs{margin:0;padding-left:18px;font-size:12px}
footer{padding:0 24px 24px;color:var(--mut);font-size:12px}
"""

# Only textContent is ever set from run data; never innerHTML.
_SCRIPT = """
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('run-data').textContent);
  var steps = data.steps || [];
  var cur = -1, timer = null;
  function byId(id) { return document.getElementById(id); }
  var shot = byId('shot'), pos = byId('step-pos'), details = byId('details');
  var items = document.querySelectorAll('.step-item');
  var PHASES = ['capture', 'model', 'grounding_model', 'grounding', 'action'];

  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) { n.className = cls; }
    if (text !== undefined && text !== null) { n.textContent = String(text); }
    return n;
  }
  function fmt(v) {
    if (v === null || v === undefined) { return '—'; }
    return typeof v === 'string' ? v : JSON.stringify(v);
  }
  function secs(v) { return (v || 0).toFixed(2) + ' s'; }
  function card(title, cls) {
    var c = el('div', 'card' + (cls ? ' ' + cls : ''));
    c.appendChild(el('h2', null, title));
    details.appendChild(c);
    return c;
  }
  function kv(parent, rows) {
    var g = el('div', 'kv');
    rows.forEach(function (r) {
      if (r[1] === undefined) { return; }
      g.appendChild(el('span', null, r[0]));
      var v = el('span', r[2] || null, fmt(r[1]));
      g.appendChild(v);
    });
    parent.appendChild(g);
    return g;
  }

  function render(s) {
    details.textContent = '';
    var a = s.action, o = s.outcome, g = s.grounding, t = s.timings || {};
    var c = card('Action', o && !o.ok ? 'bad' : null);
    if (a) {
      kv(c, [['name', a.name], ['args', a.args], ['target px', a.point_px]]);
    } else { c.appendChild(el('p', null, 'No action.')); }
    if (o) {
      kv(c, [['outcome', o.ok ? 'ok' : 'failed', o.ok ? 'ok-t' : 'bad-t'],
             ['message', o.message]]);
    }
    if (s.error) { card('Error', 'bad').appendChild(el('pre', null, s.error)); }
    if (g) {
      kv(card('Grounding'), [['target', g.description], ['box (0–1000)', g.box_norm],
                             ['point px', g.point_px], ['raw', g.raw]]);
    }
    var tc = card('Timings');
    var bar = el('div', 'bar'), total = t.total || 0, rows = [];
    PHASES.forEach(function (p) {
      var v = t[p] || 0;
      if (total > 0 && v > 0) {
        var seg = el('i', 'c-' + p);
        seg.style.width = (100 * v / total) + '%';
        seg.title = p + ' ' + secs(v);
        bar.appendChild(seg);
      }
      rows.push([p.replace('_', ' '), secs(v)]);
    });
    var other = total - PHASES.reduce(function (acc, p) { return acc + (t[p] || 0); }, 0);
    if (total > 0 && other > 0) {
      var rest = el('i', 'c-other');
      rest.style.width = (100 * other / total) + '%';
      rest.title = 'other ' + secs(other);
      bar.appendChild(rest);
    }
    tc.appendChild(bar);
    rows.push(['total', secs(total)], ['framework overhead', secs(t.framework_overhead)]);
    var grid = kv(tc, rows);
    Array.prototype.forEach.call(grid.children, function (n, i) {
      if (i % 2 === 0 && i / 2 < PHASES.length) {
        n.insertBefore(el('i', 'sw c-' + PHASES[i / 2]), n.firstChild);
      }
    });
    if (s.tool_call) {
      kv(card('Tool call'), [['name', s.tool_call.name], ['args', s.tool_call.args]]);
    }
    var mo = card('Raw model output', 'wide');
    mo.appendChild(el('pre', 'raw-output', s.raw_model_output || ''));
    if (s.messages_summary && s.messages_summary.length) {
      var list = el('ol', 'msgs');
      s.messages_summary.forEach(function (m) {
        var line = m.role + ': ' + m.text + (m.images ? '  [' + m.images + ' image(s)]' : '');
        list.appendChild(el('li', null, line));
      });
      card('Prompt messages', 'wide').appendChild(list);
    }
  }

  function show(i) {
    if (!steps.length) { return; }
    i = Math.max(0, Math.min(steps.length - 1, i));
    cur = i;
    var s = steps[i];
    byId('player').setAttribute('data-step', String(i));
    pos.textContent = 'Step ' + (i + 1) + ' of ' + steps.length;
    if (s.image) { shot.src = s.image; } else { shot.removeAttribute('src'); }
    var cap = 'index ' + s.index + ' · ' + (s.started_at || '');
    if (s.url) { cap += ' · ' + s.url; }
    if (s.screenshot_size) { cap += ' · ' + s.screenshot_size.join('×') + ' px'; }
    if (!s.image) { cap += ' · no screenshot'; }
    byId('shot-caption').textContent = cap;
    Array.prototype.forEach.call(items, function (b, j) {
      if (j === i) {
        b.setAttribute('aria-current', 'step');
        if (b.scrollIntoView) { b.scrollIntoView({block: 'nearest'}); }
      } else { b.removeAttribute('aria-current'); }
    });
    byId('prev').disabled = i === 0;
    byId('next').disabled = i === steps.length - 1 && !timer;
    render(s);
    try { history.replaceState(null, '', '#step-' + (i + 1)); } catch (e) { /* file: */ }
  }

  function stop() {
    if (timer) { clearInterval(timer); timer = null; }
    byId('play').classList.remove('on');
    byId('play').textContent = '▶ Play';
    if (steps.length) { byId('next').disabled = cur === steps.length - 1; }
  }
  function play() {
    if (!steps.length) { return; }
    if (cur >= steps.length - 1) { show(0); }
    byId('play').classList.add('on');
    byId('play').textContent = '❚❚ Pause';
    timer = setInterval(function () {
      if (cur >= steps.length - 1) { stop(); } else { show(cur + 1); }
    }, Number(byId('speed').value) || 1500);
  }

  byId('prev').addEventListener('click', function () { stop(); show(cur - 1); });
  byId('next').addEventListener('click', function () { stop(); show(cur + 1); });
  byId('play').addEventListener('click', function () { if (timer) { stop(); } else { play(); } });
  byId('speed').addEventListener('change', function () { if (timer) { stop(); play(); } });
  shot.addEventListener('click', function () { shot.classList.toggle('actual'); });
  Array.prototype.forEach.call(items, function (b) {
    b.addEventListener('click', function () { stop(); show(Number(b.getAttribute('data-i'))); });
  });
  document.addEventListener('keydown', function (ev) {
    var tag = (ev.target && ev.target.tagName) || '';
    if (/^(INPUT|SELECT|TEXTAREA)$/.test(tag) || !steps.length) { return; }
    if (ev.key === ' ' && tag === 'BUTTON') { return; }  // the button's own click
    if (ev.key === 'ArrowRight') { stop(); show(cur + 1); }
    else if (ev.key === 'ArrowLeft') { stop(); show(cur - 1); }
    else if (ev.key === 'Home') { stop(); show(0); }
    else if (ev.key === 'End') { stop(); show(steps.length - 1); }
    else if (ev.key === ' ') { if (timer) { stop(); } else { play(); } }
    else { return; }
    ev.preventDefault();
  });

  var m = /^#step-(\\d+)$/.exec(location.hash);
  show(m ? Number(m[1]) - 1 : 0);
}());
"""

// The report.html player (inserted by report.py, allowed by its CSP hash). Only textContent is
// ever set from run data; never innerHTML.
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

  var m = /^#step-(\d+)$/.exec(location.hash);
  show(m ? Number(m[1]) - 1 : 0);
}());

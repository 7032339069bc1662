// The page's break-glass tape: GET /admin/breakglass once a second (with
// the page's token, same-origin, no cookies), newest first, each entry with
// its directive, the set's revision and a link to /admin/explain for that
// request; the link is followed by a same-origin fetch with the token (a
// plain navigation would carry none) and the answer shown below the table.
// The tape holds shape-only records; every value is set as textContent.
'use strict';
(function () {
  var POLL_MS = 1000;
  var SHOWN = 50;

  function $(id) { return document.getElementById(id); }
  function page() { return window.osproxyPage; }

  function get(path) {
    return fetch(path, { headers: page().authHeaders(), cache: 'no-store', credentials: 'omit' })
      .then(function (r) { return r.json().then(function (b) { return { status: r.status, body: b }; }); });
  }

  function when(e) {
    var ns = Number(e.start_unix_nanos);
    if (!isFinite(ns) || ns <= 0) { return '-'; }
    return new Date(Math.floor(ns / 1e6)).toISOString();
  }

  function requestText(e) {
    var parts = [e.endpoint || '?'];
    if (e.index) { parts.push('index=' + e.index); }
    if (e.principal) { parts.push('principal=' + e.principal); }
    return parts.join(' ');
  }

  // Only this instance's own explain route, as the server built it.
  function explainPath(e) {
    var p = typeof e.explain === 'string' ? e.explain : '';
    return (p === '/admin/explain' || p.indexOf('/admin/explain?') === 0) ? p : null;
  }

  function explainText(res) {
    if (res.status !== 200) { return (res.body.error || ('HTTP ' + res.status)) + ': ' + (res.body.message || ''); }
    var d = res.body.decision || {};
    var lines = ['decided now: level ' + d.level + (d.directive ? ', directive ' + d.directive : '') + ', revision ' + d.revision];
    (res.body.directives || []).forEach(function (x) {
      lines.push(x.id + ': ' + (x.why_not ? 'not applied (' + x.why_not + ')' : 'applies'));
    });
    return lines.join('\n');
  }

  function explain(path) {
    $('tape-explain').textContent = 'asking ' + path + ' …';
    get(path)
      .then(function (res) { $('tape-explain').textContent = path + '\n' + explainText(res); })
      .catch(function () { $('tape-explain').textContent = 'cannot reach this instance'; });
  }

  function row(e) {
    var el = page().el;
    var tr = el('tr');
    tr.appendChild(el('td', when(e), 'when'));
    tr.appendChild(el('td', e.request_id || '-', 'request-id'));
    tr.appendChild(el('td', e.tenant === null || e.tenant === undefined ? '-' : e.tenant, 'tenant'));
    tr.appendChild(el('td', requestText(e), 'request'));
    tr.appendChild(el('td', e['osproxy.directive.id'] || '-', 'directive'));
    tr.appendChild(el('td', e['osproxy.directive.revision'] === undefined ? '-' : String(e['osproxy.directive.revision']), 'revision'));
    tr.appendChild(el('td', e['osproxy.diag.level'] || '-', 'level'));
    tr.appendChild(el('td', String(1 + (Array.isArray(e.spans) ? e.spans.length : 0)), 'spans'));
    var cell = el('td', null, 'explain');
    var path = explainPath(e);
    if (path) {
      var a = el('a', 'explain', 'explain');
      a.href = path;
      a.addEventListener('click', function (ev) { ev.preventDefault(); explain(path); });
      cell.appendChild(a);
    }
    tr.appendChild(cell);
    return tr;
  }

  function render(b) {
    var section = $('tape-section');
    section.hidden = !b.enabled;
    if (!b.enabled) { return; }
    var entries = Array.isArray(b.entries) ? b.entries : [];
    var body = $('tape').tBodies[0];
    body.replaceChildren.apply(body, entries.slice(0, SHOWN).map(row));
    $('tape-note').textContent = entries.length
      ? entries.length + ' recorded request(s) on this instance (tape of ' + b.capacity + '), newest first'
      : 'nothing recorded: no directive with ring_buffer has matched a request on this instance';
  }

  function poll() {
    if (!page()) { return; }
    get('/admin/breakglass')
      .then(function (res) { if (res.status === 200) { render(res.body); } })
      .catch(function () { /* app.js reports an unreachable instance */ });
  }

  document.addEventListener('DOMContentLoaded', function () {
    poll();
    setInterval(poll, POLL_MS);
  });
}());

// The operator's page: polls GET /admin/page, rebuilds the tables with
// textContent only (never parsed as HTML: every value comes from etcd), and
// counts each directive's remaining lifetime down between polls.
'use strict';
(function () {
  var TOKEN_KEY = 'osproxy-admin-token';
  var POLL_MS = 1000;
  var TICK_MS = 250;
  // [{cell, deadline}]: performance.now() at which each directive expires.
  var countdowns = [];

  function $(id) { return document.getElementById(id); }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }

  function authHeaders() {
    var t = token();
    return t ? { 'Authorization': 'Bearer ' + t } : {};
  }

  function el(tag, text, className) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (className) { e.className = className; }
    return e;
  }

  // Two most significant units, as the CLI prints durations: 9m44s, 1h, 2d3h.
  function formatSecs(secs) {
    if (secs <= 0) { return 'expired'; }
    var units = [[86400, 'd'], [3600, 'h'], [60, 'm'], [1, 's']];
    var out = '', left = secs, shown = 0;
    for (var i = 0; i < units.length && shown < 2; i++) {
      var n = Math.floor(left / units[i][0]);
      left = left % units[i][0];
      if (n > 0 || shown > 0) {
        if (n > 0) { out += n + units[i][1]; }
        shown++;
      }
    }
    return out;
  }

  function orDash(list) { return list && list.length ? list.join(', ') : '-'; }

  function row(cells) {
    var tr = el('tr');
    cells.forEach(function (c) { tr.appendChild(el('td', c[1], c[0])); });
    return tr;
  }

  function summary(m) {
    var line = 'store ' + m.store;
    if (m.source) { line += ' ' + m.source; }
    line += ', revision ' + m.revision + ', ' + m.directives.length + ' directive(s)';
    if (m.failsafe_since) { line += ', fail-safe engaged since ' + m.failsafe_since; }
    return line;
  }

  function renderDirectives(m, polledAt) {
    var body = $('directives').tBodies[0];
    var rows = [];
    countdowns = [];
    m.directives.forEach(function (d) {
      var tr = row([['id', d.id], ['level', d.level], ['targets', d.targets],
        ['sample', d.sample_per_mille], ['flags', d.flags], ['expires', d.expires_at]]);
      var left = el('td', formatSecs(d.remaining_secs), 'remaining');
      tr.appendChild(left);
      tr.appendChild(el('td', orDash(d.clamped), 'clamped'));
      countdowns.push({ cell: left, deadline: polledAt + d.remaining_secs * 1000 });
      rows.push(tr);
    });
    body.replaceChildren.apply(body, rows);
    $('no-directives').hidden = m.directives.length > 0;
  }

  function renderFleet(f) {
    $('fleet-section').hidden = !f;
    if (!f) { return; }
    $('fleet-summary').textContent = f.error
      ? 'fleet reports unavailable: ' + f.error
      : 'live revision ' + (f.latest_revision || 0) + ', ' + f.instances.length + ' instance(s) reporting';
    var body = $('instances').tBodies[0];
    var rows = f.instances.map(function (r) {
      var tr = row([['instance', r.instance], ['state', r.state], ['applied', r.applied_revision],
        ['current', r.current_revision], ['count', r.directives], ['rejected', r.rejected || '-'],
        ['clamped', orDash(r.clamped)], ['failsafe', r.failsafe_since || '-'],
        ['last-report', r.last_report]]);
      tr.className = 'state-' + r.state;
      return tr;
    });
    body.replaceChildren.apply(body, rows);
  }

  function setStatus(text) { $('status').textContent = text; }

  function showAuth(needed) {
    $('auth').hidden = !needed;
    $('data').hidden = needed;
  }

  function tick() {
    var now = performance.now();
    countdowns.forEach(function (c) {
      c.cell.textContent = formatSecs(Math.ceil((c.deadline - now) / 1000));
    });
  }

  function poll() {
    var started = performance.now();
    return fetch('/admin/page', { headers: authHeaders(), cache: 'no-store', credentials: 'omit' })
      .then(function (r) {
        return r.json().then(function (body) { return { status: r.status, body: body }; });
      })
      .then(function (res) {
        if (res.status === 401) {
          showAuth(true);
          $('auth-error').textContent = token() ? 'the token was refused' : '';
          setStatus('admin token required');
          return;
        }
        if (res.status !== 200) {
          setStatus('instance answered ' + res.status + ' ' + (res.body.error || ''));
          return;
        }
        showAuth(false);
        $('summary').textContent = summary(res.body);
        renderDirectives(res.body, started);
        renderFleet(res.body.fleet);
        if (window.osproxyHistory) { window.osproxyHistory.render(res.body); }
        if (window.osproxyAuthor) { window.osproxyAuthor.render(res.body); }
        setStatus('live: updated ' + new Date().toISOString());
      })
      .catch(function () { setStatus('cannot reach this instance; showing the last answer'); });
  }

  function useToken() {
    try { sessionStorage.setItem(TOKEN_KEY, $('token').value); } catch (e) { /* private mode */ }
    $('token').value = '';
    poll();
  }

  document.addEventListener('DOMContentLoaded', function () {
    $('use-token').addEventListener('click', useToken);
    window.osproxyPage = { authHeaders: authHeaders, el: el, poll: poll, setStatus: setStatus };
    poll();
    setInterval(poll, POLL_MS);
    setInterval(tick, TICK_MS);
  });
}());

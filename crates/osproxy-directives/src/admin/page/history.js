// The page's history panel: GET /admin/history when the live revision
// moves, each revision with who/why/when and its diff (ids added, removed,
// changed), and a rollback that asks for confirmation, then POSTs
// /admin/rollback with the live revision the operator saw (compare-and-swap)
// and shows the outcome. Values are set as textContent only.
'use strict';
(function () {
  var seenRevision = null;
  var liveRevision = null;
  // The rollback awaiting confirmation: {to, expected}, expected being the
  // live revision the operator saw when asking (the compare-and-swap base).
  var pending = null;

  function $(id) { return document.getElementById(id); }
  function page() { return window.osproxyPage; }

  function diffText(c) {
    if (!c) { return '(the state before it is compacted away)'; }
    var lines = [];
    c.added.forEach(function (id) { lines.push('+ ' + id); });
    c.removed.forEach(function (id) { lines.push('- ' + id); });
    c.changed.forEach(function (id) { lines.push('~ ' + id); });
    return lines.length ? lines.join('\n') : '(no directive changed)';
  }

  function who(e) {
    if (e.note === 'unknown') { return 'unknown (written by another tool)'; }
    if (e.note !== 'recorded') { return 'note rejected: ' + e.note; }
    var parts = [];
    parts.push(e.author || 'no author');
    if (e.published_at) { parts.push(e.published_at); }
    return parts.join(', ');
  }

  function render(h) {
    var el = page().el;
    liveRevision = h.live_revision;
    var body = $('history').tBodies[0];
    var rows = h.entries.map(function (e, i) {
      var tr = el('tr');
      tr.appendChild(el('td', e.revision, 'revision'));
      tr.appendChild(el('td', who(e), 'who'));
      tr.appendChild(el('td', e.reason || '-', 'reason'));
      tr.appendChild(el('td', e.directives.length ? e.directives.join(', ') : '(empty set)', 'set'));
      var diff = el('td', null, 'diff');
      diff.appendChild(el('pre', diffText(e.changes), 'diff'));
      tr.appendChild(diff);
      var action = el('td', null, 'action');
      if (i > 0) {
        var b = el('button', 'Roll back to ' + e.revision, 'rollback');
        b.type = 'button';
        b.dataset.revision = String(e.revision);
        b.addEventListener('click', function () { ask(e.revision); });
        action.appendChild(b);
      } else {
        action.textContent = 'live';
      }
      tr.appendChild(action);
      return tr;
    });
    body.replaceChildren.apply(body, rows);
    var notes = [];
    if (h.more) { notes.push('older revisions exist'); }
    if (h.compacted) { notes.push('etcd compacted its history: the oldest available revision is ' + h.compacted); }
    $('history-note').textContent = notes.join('; ');
  }

  function load() {
    return fetch('/admin/history', { headers: page().authHeaders(), cache: 'no-store', credentials: 'omit' })
      .then(function (r) { return r.json().then(function (b) { return { status: r.status, body: b }; }); })
      .then(function (res) {
        if (res.status === 200) { render(res.body); }
        else { $('history-note').textContent = 'history unavailable: ' + (res.body.error || res.status); }
      })
      .catch(function () { $('history-note').textContent = 'history unavailable: cannot reach this instance'; });
  }

  function ask(revision) {
    pending = { to: revision, expected: liveRevision };
    $('confirm-text').textContent = 'Roll back to revision ' + revision + '? This republishes the set as of revision ' +
      revision + ' over live revision ' + liveRevision + ' (only if nothing changed since), keeping its expiries and dropping expired directives.';
    $('confirm').hidden = false;
  }

  function cancel() { pending = null; $('confirm').hidden = true; }

  function outcomeText(status, b) {
    if (status === 200 && b.outcome === 'rolled_back') {
      var t = 'rolled back to revision ' + b.to + ': wrote revision ' + b.revision;
      if (b.expired.length) { t += '; dropped expired: ' + b.expired.join(', '); }
      return t;
    }
    if (status === 200) { return 'nothing to write: the live set already is the set as of revision ' + b.to; }
    return (b.error || ('HTTP ' + status)) + ': ' + (b.message || '');
  }

  function confirmRollback() {
    if (pending === null) { return; }
    var request = { to: pending.to, expected_revision: pending.expected };
    cancel();
    var headers = page().authHeaders();
    headers['Content-Type'] = 'application/json';
    $('rollback-outcome').textContent = 'rolling back…';
    $('rollback-outcome').className = '';
    fetch('/admin/rollback', { method: 'POST', headers: headers, body: JSON.stringify(request), cache: 'no-store', credentials: 'omit' })
      .then(function (r) { return r.json().then(function (b) { return { status: r.status, body: b }; }); })
      .then(function (res) {
        $('rollback-outcome').textContent = outcomeText(res.status, res.body);
        $('rollback-outcome').className = res.status === 200 ? 'outcome-ok' : 'outcome-error';
        seenRevision = null;
        page().poll();
      })
      .catch(function () {
        $('rollback-outcome').textContent = 'no answer: the rollback may or may not have been applied; check the live revision';
        $('rollback-outcome').className = 'outcome-error';
      });
  }

  window.osproxyHistory = {
    render: function (model) {
      var section = $('history-section');
      section.hidden = !model.fleet;
      if (!model.fleet) { return; }
      var live = model.fleet.latest_revision;
      if (live !== seenRevision) { seenRevision = live; load(); }
    }
  };

  document.addEventListener('DOMContentLoaded', function () {
    $('confirm-yes').addEventListener('click', confirmRollback);
    $('confirm-no').addEventListener('click', cancel);
  });
}());

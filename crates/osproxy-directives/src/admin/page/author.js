// The page's authoring panel: add a directive, give one a new lifetime, or
// end one now. Each change is first previewed (POST /admin/preview: the
// instance checks the set it would write with the fleet's decoder and its
// limits, and answers a rejection's slug), then written (POST /admin/edit)
// with compare-and-swap against the revision the page showed when the
// preview was asked, with the operator's reason. Capture, ring buffer and
// ShapeRewriteDiff need an explicit confirmation. Values are set as
// textContent only.
'use strict';
(function () {
  // The revision of the set the page shows now.
  var shownRevision = null;
  // The previewed change awaiting "Write": {request, expected, needs}.
  var pending = null;

  function $(id) { return document.getElementById(id); }
  function page() { return window.osproxyPage; }

  function outcome(text, ok) {
    $('author-outcome').textContent = text;
    $('author-outcome').className = ok === undefined ? '' : (ok ? 'outcome-ok' : 'outcome-error');
  }

  function errorText(status, b) {
    var slug = b && b.error ? b.error : 'HTTP ' + status;
    var text = slug + ': ' + (b && b.message ? b.message : '');
    if (b && b.directive_index !== undefined) { text += ' (directive ' + b.directive_index + ')'; }
    return text;
  }

  function post(path, request) {
    var headers = page().authHeaders();
    headers['Content-Type'] = 'application/json';
    return fetch(path, { method: 'POST', headers: headers, body: JSON.stringify(request), cache: 'no-store', credentials: 'omit' })
      .then(function (r) { return r.json().then(function (b) { return { status: r.status, body: b }; }); });
  }

  function addRequest() {
    var d = { id: $('add-id').value.trim(), level: $('add-level').value };
    ['tenant', 'index', 'principal'].forEach(function (k) {
      var v = $('add-' + k).value;
      if (v !== '') { d[k] = v; }
    });
    if ($('add-endpoint').value) { d.endpoint = $('add-endpoint').value; }
    // Sent as typed: the instance's decoder judges them.
    if ($('add-sample').value !== '') { d.sample_per_mille = Number($('add-sample').value); }
    if ($('add-budget').value !== '') { d.max_per_sec = Number($('add-budget').value); }
    if ($('add-capture').checked) { d.capture = true; }
    if ($('add-ring-buffer').checked) { d.ring_buffer = true; }
    return { op: 'add', directive: d, lifetime: $('add-lifetime').value, reason: $('add-reason').value };
  }

  function editRequest(op) {
    var r = { op: op, id: $('edit-id').value, reason: $('edit-reason').value };
    if (op === 'extend') { r.lifetime = $('edit-lifetime').value; }
    return r;
  }

  function describe(request, b) {
    var what;
    if (b.op === 'add') { what = (b.replaced ? 'Replace ' : 'Add ') + b.id + ', expiring ' + b.expires_at; }
    else if (b.op === 'extend') { what = 'Give ' + b.id + ' a new expiry: ' + b.expires_at; }
    else { what = 'End ' + b.id + ' now (remove it from the live set)'; }
    var lines = [];
    b.changes.added.forEach(function (id) { lines.push('+ ' + id); });
    b.changes.removed.forEach(function (id) { lines.push('- ' + id); });
    b.changes.changed.forEach(function (id) { lines.push('~ ' + id); });
    return what + '. Valid for this instance: ' + b.directives + ' directive(s) would be live (' +
      (lines.length ? lines.join(', ') : 'no change') + '), written over revision ' + pending.expected +
      (b.compare === 'key' ? ' only if ' + b.id + ' is unchanged since' : ' only if nothing changed since') +
      '. Reason: ' + (request.reason.trim() || '(none given: required to write)');
  }

  function preview(request) {
    cancel();
    if (shownRevision === null) { outcome('the page has not loaded the live set yet', false); return; }
    var expected = shownRevision;
    request.expected_revision = expected;
    outcome('previewing…');
    post('/admin/preview', request)
      .then(function (res) {
        if (res.status !== 200) { outcome(errorText(res.status, res.body), false); return; }
        pending = { request: request, expected: expected, needs: res.body.needs_confirmation };
        $('author-review-text').textContent = describe(request, res.body);
        var needs = pending.needs.length > 0;
        $('author-ack').checked = false;
        $('author-ack-text').textContent = needs
          ? 'I confirm this directive records more than shapes: ' + pending.needs.join(', ')
          : '';
        $('author-ack-label').hidden = !needs;
        $('author-review').hidden = false;
        outcome('preview: valid', true);
      })
      .catch(function () { outcome('cannot reach this instance: nothing was previewed', false); });
  }

  function cancel() {
    pending = null;
    $('author-review').hidden = true;
  }

  function written(b) {
    if (b.op === 'add') { return (b.replaced ? 'replaced ' : 'added ') + b.id + ' at revision ' + b.revision; }
    if (b.op === 'extend') { return 'extended ' + b.id + ' to ' + b.expires_at + ' at revision ' + b.revision; }
    return 'ended ' + b.id + ' at revision ' + b.revision;
  }

  function write() {
    if (pending === null) { return; }
    var request = pending.request;
    request.expected_revision = pending.expected;
    request.confirmed = $('author-ack').checked;
    cancel();
    outcome('writing…');
    post('/admin/edit', request)
      .then(function (res) {
        if (res.status === 200) { outcome(written(res.body) + ' (author ' + res.body.author + ')', true); }
        else { outcome(errorText(res.status, res.body), false); }
        page().poll();
      })
      .catch(function () {
        outcome('no answer: the change may or may not have been written; check the live revision', false);
      });
  }

  // Keeps the directive choice in step with the live set.
  var listedIds = null;
  function renderChoices(m) {
    var select = $('edit-id');
    var chosen = select.value;
    var ids = m.directives.map(function (d) { return d.id; });
    if (listedIds !== null && ids.join('\n') === listedIds) { return; }
    listedIds = ids.join('\n');
    var options = ids.map(function (id) {
      var o = document.createElement('option');
      o.value = id;
      o.textContent = id;
      return o;
    });
    select.replaceChildren.apply(select, options);
    if (ids.indexOf(chosen) >= 0) { select.value = chosen; }
  }

  window.osproxyAuthor = {
    render: function (model) {
      shownRevision = model.revision;
      $('author-section').dataset.revision = String(model.revision);
      renderChoices(model);
    }
  };

  document.addEventListener('DOMContentLoaded', function () {
    $('add-preview').addEventListener('click', function () { preview(addRequest()); });
    $('extend-preview').addEventListener('click', function () { preview(editRequest('extend')); });
    $('end-preview').addEventListener('click', function () { preview(editRequest('end')); });
    $('author-write').addEventListener('click', write);
    $('author-cancel').addEventListener('click', cancel);
  });
}());

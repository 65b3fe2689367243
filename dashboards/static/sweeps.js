/* The sweep list: GET {api}/sweeps (paginated), with each unfinished sweep's progress from
   GET {api}/sweeps/{id}. Tolerant of the response shape: a list, or an object holding one. */
(function () {
  "use strict";

  var api = window.hpscapeApi;  // api.js: token, requests, errors, the token form
  var config = api.config;
  var esc = api.esc;
  var TERMINAL = api.TERMINAL;
  var PAGE = 50;
  var state = { limit: PAGE, timer: null, progress: {} };
  window.hpscape = { state: state, loads: 0, rendered: 0 };

  function $(id) { return document.getElementById(id); }

  function items(data) {
    if (Array.isArray(data)) return data;
    var keys = ["items", "sweeps", "results", "data"];
    for (var i = 0; i < keys.length; i++) if (data && Array.isArray(data[keys[i]])) return data[keys[i]];
    return [];
  }

  function when(s) {
    if (!s) return "";
    var d = new Date(s);
    return isNaN(d.getTime()) ? esc(s) : d.toLocaleString();
  }

  // [done, total] from whatever progress a sweep (list item or detail) carries; null if none.
  function progressOf(s) {
    var p = s && s.progress;
    if (p && typeof p === "object") {
      var done = p.done !== undefined ? p.done : (p.finished !== undefined ? p.finished : p.completed);
      var total = p.total !== undefined ? p.total : s.total_trials;
      if (isFinite(done) && isFinite(total)) return [Number(done), Number(total)];
    }
    if (typeof p === "number" && isFinite(p)) return p <= 1 ? [p, 1] : [p, 100];
    return null;
  }

  function progressCell(s) {
    var id = s.id;
    var known = progressOf(s) || state.progress[id];
    var total = s.total_trials;
    if (!known && s.status === "succeeded" && total) known = [total, total];
    if (!known) return "<span class=muted>" + (total ? total + " trials" : "") + "</span>";
    var frac = known[1] ? known[0] / known[1] : 0;
    var running = s.status === "running" ? " running" : "";
    return "<span class=progress><span class='bar" + running + "' style='width:" + (100 * frac).toFixed(1) +
      "%'></span></span> <span class=muted>" + known[0] + " / " + known[1] + "</span>";
  }

  function render(list) {
    var rows = list.map(function (s) {
      var name = s.name || s.record_name || s.id;
      var status = s.status || "";
      return "<tr data-id='" + esc(s.id) + "'><td class=left><a href='" + esc(config.pages) + "/sweeps/" +
        encodeURIComponent(s.id) + "'>" + esc(name) + "</a> <span class=muted>" + esc(s.id) + "</span></td><td class=left><span class='badge " + esc(status) +
        "'>" + esc(status) + "</span></td><td class=left>" + progressCell(s) + "</td><td class=left>" + esc(s.owner) +
        "</td><td class=left>" + when(s.created_at) + "</td><td class=left>" + when(s.finished_at) + "</td></tr>";
    });
    if (!rows.length) rows.push("<tr><td class=left colspan=6>No sweeps yet: submit one with <code>hpscape submit</code>.</td></tr>");
    document.querySelector("#sweeps tbody").innerHTML = rows.join("");
    window.hpscape.rendered += 1;
  }

  function refreshProgress(list) {
    // The list does not carry progress: ask each sweep that is still moving (or not yet known).
    var wanted = list.filter(function (s) {
      return !progressOf(s) && (TERMINAL.indexOf(s.status) < 0 || !state.progress[s.id]);
    });
    return Promise.all(wanted.map(function (s) {
      return api.getJson("/sweeps/" + encodeURIComponent(s.id)).then(function (detail) {
        var p = progressOf(detail);
        if (p) state.progress[s.id] = p;
      }).catch(function () { /* shown on the next full refresh */ });
    }));
  }

  function load() {
    window.hpscape.loads += 1;
    return api.getJson("/sweeps", { limit: state.limit, offset: 0 }).then(function (data) {
      api.showAuth(false);
      $("message").hidden = true;
      var list = items(data);
      render(list);
      var total = data && isFinite(data.total) ? data.total : list.length;
      $("more").hidden = !(total > list.length);
      $("updated").textContent = list.length + (total > list.length ? " of " + total : "") + " sweeps \u00b7 updated " +
        new Date().toLocaleTimeString();
      return refreshProgress(list).then(function () { render(list); return list; });
    }).catch(function (err) {
      $("message").hidden = false;
      $("message").textContent = api.errorText(err);
      return [];
    }).then(function (list) {
      var active = list.some(function (s) { return TERMINAL.indexOf(s.status) < 0; });
      if (state.timer) window.clearTimeout(state.timer);
      state.timer = window.setTimeout(load, active ? config.poll_ms : 6 * config.poll_ms);
    });
  }

  $("more").addEventListener("click", function () { state.limit += PAGE; load(); });
  api.onTokenSaved(load);
  load();
})();

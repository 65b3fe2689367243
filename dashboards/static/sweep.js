/* The sweep page: fetches the landscape (with its plotly figure) and polls while the sweep runs.
   Everything the page shows comes from GET {api}/sweeps/{id}/landscape; the figure is built by
   the server (dashboards.figures), so the exported HTML and this page draw the same thing. */
(function () {
  "use strict";

  // This script runs in <head>, before plotly.min.js: the first landscape request goes out at
  // once and the server builds it while the browser compiles plotly.js. The DOM work waits.
  var config = JSON.parse(document.getElementById("hpscape-config").textContent);
  // ?poll=SECONDS overrides the refresh interval (tests, slow links).
  var pollParam = parseFloat(new URLSearchParams(window.location.search).get("poll"));
  if (isFinite(pollParam) && pollParam > 0) config.poll_ms = Math.max(200, pollParam * 1000);
  var TERMINAL = ["succeeded", "failed", "cancelled"];
  var plotConfig = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
  var gd = null;
  var curvesDiv = null;
  var domReady = new Promise(function (resolve) {
    if (document.readyState !== "loading") resolve();
    else document.addEventListener("DOMContentLoaded", function () { resolve(); });
  });
  var state = {
    metric: "test_error",
    epoch: "",
    clip: null, // [lo, hi] in metric units, set by the user; null: the server's default
    model: false,
    payload: null,
    timer: null,
    loading: false,
    cell: null,
    bound: false,
    pending: false,
    notice: null, // an explanation kept on screen across refreshes until the next choice
  };
  // Read by the browser test and handy in the console.
  window.hpscape = { state: state, renders: 0, firstRenderMs: null, lastRenderMs: null, loads: 0 };

  function $(id) { return document.getElementById(id); }

  function token() {
    try { return window.localStorage.getItem("hpscape.token") || ""; } catch (e) { return ""; }
  }

  function headers() {
    var t = token();
    return t ? { Authorization: "Bearer " + t } : {};
  }

  function isError(metric) { return /error$/.test(metric || ""); }

  function fmt(metric, v, signed) {
    if (v === null || v === undefined || !isFinite(v)) return "\u2014";
    var s = signed && v > 0 ? "+" : "";
    return isError(metric) ? s + (100 * v).toFixed(2) + " %" : s + Number(v).toPrecision(4);
  }

  function sci(v) {
    if (v === null || v === undefined) return "\u2014";
    return v === 0 ? "0" : Number(v).toPrecision(3);
  }

  function showMessage(text, kind) {
    var box = $("message");
    if (!text) { box.hidden = true; box.textContent = ""; return; }
    box.hidden = false;
    box.className = "message" + (kind ? " " + kind : "");
    box.textContent = text;
  }

  function detailText(body, status) {
    if (!body || body.detail === undefined) return "HTTP " + status;
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) {
      return body.detail.map(function (d) {
        return (d.loc ? d.loc.join(".") + ": " : "") + (d.msg || JSON.stringify(d));
      }).join("\n");
    }
    return JSON.stringify(body.detail);
  }

  function ApiError(status, message) { this.status = status; this.message = message; }

  function url(path, params) {
    var u = new URL(config.api + path, window.location.origin);
    Object.keys(params || {}).forEach(function (k) {
      var v = params[k];
      if (v !== null && v !== undefined && v !== "" && v !== false) u.searchParams.set(k, String(v));
    });
    return u.toString();
  }

  function api(path, params) {
    return fetch(url(path, params), { headers: headers() }).then(function (response) {
      if (response.ok) return response;
      return response.text().then(function (text) {
        var body = null;
        try { body = JSON.parse(text); } catch (e) { body = { detail: text }; }
        if (response.status === 401) domReady.then(function () { $("auth").hidden = false; });
        throw new ApiError(response.status, detailText(body, response.status));
      });
    });
  }

  function sweepPath(suffix) { return "/sweeps/" + encodeURIComponent(config.sweep_id) + suffix; }

  function landscapeParams(extra) {
    var p = { metric: state.metric, epoch: state.epoch, model: state.model ? "true" : "" };
    if (state.clip) { p.clip_lo = state.clip[0]; p.clip_hi = state.clip[1]; }
    return Object.assign(p, extra || {});
  }

  // ------------------------------------------------------------------------------------------
  // Loading and polling

  function schedule() {
    if (state.timer) window.clearTimeout(state.timer);
    state.timer = null;
    if (!$("live").checked || !state.payload || finished(state.payload)) return;
    state.timer = window.setTimeout(load, config.poll_ms);
  }

  function finished(payload) {
    var p = payload.progress || {};
    var active = (p.running || 0) + (p.queued || 0);
    var status = payload.sweep && payload.sweep.status;
    if (status) return TERMINAL.indexOf(status) >= 0 && active === 0;
    return active === 0 && (p.total || 0) > 0;
  }

  function load() {
    if (state.loading) { state.pending = true; return Promise.resolve(); }
    state.loading = true;
    window.hpscape.loads += 1;
    var request = api(sweepPath("/landscape"), landscapeParams({ figure: "true" }))
      .then(function (r) { return r.json(); });
    return Promise.all([request, domReady]).then(function (results) { return results[0]; })
      .then(function (payload) {
        $("auth").hidden = true;
        showMessage(state.notice || "", "info");
        render(payload);
      })
      .catch(function (err) {
        return domReady.then(function () {
          if (err instanceof ApiError) {
            showMessage(err.status === 404 ? "No such sweep: " + err.message : err.message);
          } else {
            showMessage("Could not reach the server (" + err + "); retrying.");
          }
        });
      })
      .then(function () {
        state.loading = false;
        if (state.pending) { state.pending = false; load(); return; }
        schedule();
      });
  }

  // ------------------------------------------------------------------------------------------
  // Rendering

  function render(payload) {
    var first = state.payload === null;
    state.payload = payload;
    renderHeader(payload);
    if (first) initControls(payload);
    syncControls(payload);
    renderNotes(payload);
    renderFigure(payload);
    renderCoupling(payload);
    if (first) loadTable(null);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  function renderHeader(payload) {
    var sweep = payload.sweep || {};
    $("sweep-name").textContent = (sweep.name || "") + " \u00b7 " + config.sweep_id;
    document.title = "hpscape \u00b7 " + (sweep.name || config.sweep_id);
    var status = sweep.status || "";
    var badge = $("sweep-status");
    badge.textContent = status || "unknown";
    badge.className = "badge " + status;
    var p = payload.progress || {};
    var total = p.total || 0;
    var done = p.finished || 0;
    var bar = $("progress-bar");
    bar.style.width = total ? (100 * done / total).toFixed(1) + "%" : "0%";
    bar.className = "bar" + ((p.running || 0) > 0 ? " running" : "");
    var parts = [done + " / " + total + " trials finished"];
    ["running", "queued", "diverged", "stopped", "failed"].forEach(function (k) {
      if (p[k]) parts.push(p[k] + " " + k);
    });
    $("progress-text").textContent = parts.join(" \u00b7 ");
  }

  function initControls(payload) {
    var metricSel = $("metric");
    (payload.metrics || []).forEach(function (m) {
      var o = document.createElement("option");
      o.value = m;
      o.textContent = m.replace(/_/g, " ");
      metricSel.appendChild(o);
    });
    metricSel.value = payload.metric;
    state.metric = payload.metric;
    var epochSel = $("epoch");
    var epochs = (payload.sweep && payload.sweep.epochs) || 0;
    for (var e = 1; e < epochs; e++) {
      var o = document.createElement("option");
      o.value = String(e);
      o.textContent = String(e);
      epochSel.appendChild(o);
    }
    var tableSel = $("table-variant");
    (payload.variants || []).forEach(function (v) {
      var o = document.createElement("option");
      o.value = v;
      o.textContent = v;
      tableSel.appendChild(o);
    });
    var binned = Object.keys(payload.landscapes || {}).some(function (v) {
      return payload.landscapes[v].kind === "binned";
    });
    $("model-toggle").hidden = !binned;

    metricSel.addEventListener("change", function () {
      state.metric = metricSel.value;
      var specMetric = payload.sweep && payload.sweep.spec_metric;
      if (state.epoch && specMetric && state.metric !== specMetric) {
        state.epoch = "";
        epochSel.value = "";
        state.notice = state.metric.replace(/_/g, " ") + " is recorded at the final epoch only: per-epoch values " +
          "hold " + specMetric.replace(/_/g, " ") + ". Showing the final epoch.";
      } else {
        state.notice = null;
      }
      state.clip = null;
      state.cell = null;
      reload();
    });
    epochSel.addEventListener("change", function () { state.epoch = epochSel.value; state.notice = null; reload(); });
    $("clip-lo").addEventListener("change", applyClip);
    $("clip-hi").addEventListener("change", applyClip);
    $("clip-reset").addEventListener("click", function () {
      state.clip = null;
      reload();
    });
    $("model").addEventListener("change", function () { state.model = $("model").checked; reload(); });
    $("live").addEventListener("change", schedule);
    $("table-best").addEventListener("click", function () { state.cell = null; loadTable(null); });
    tableSel.addEventListener("change", function () { state.cell = null; loadTable(null); });
    Array.prototype.forEach.call(document.querySelectorAll("[data-export]"), function (button) {
      button.addEventListener("click", function () { exportAs(button.getAttribute("data-export")); });
    });
    $("export-png").addEventListener("click", function () {
      var size = gd._fullLayout || {};
      Plotly.downloadImage(gd, {
        format: "png",
        filename: fileStem(),
        width: size.width || 1300,
        height: size.height || 800,
        scale: 2,
      });
    });
  }

  function syncControls(payload) {
    var specMetric = payload.sweep && payload.sweep.spec_metric;
    Array.prototype.forEach.call($("epoch").options, function (o) {
      o.disabled = o.value !== "" && !!specMetric && state.metric !== specMetric;
      o.title = o.disabled ? "per-epoch values hold " + specMetric + " only" : "";
    });
    var clip = payload.clip;
    var scale = isError(payload.metric) ? 100 : 1;
    $("clip-unit").textContent = isError(payload.metric) ? "%" : "";
    if (clip && document.activeElement !== $("clip-lo") && document.activeElement !== $("clip-hi")) {
      $("clip-lo").value = +(clip[0] * scale).toPrecision(4);
      $("clip-hi").value = +(clip[1] * scale).toPrecision(4);
    }
  }

  function reload() {
    if (state.timer) window.clearTimeout(state.timer);
    return load();
  }

  function applyClip() {
    var scale = isError(state.metric) ? 100 : 1;
    var lo = parseFloat($("clip-lo").value) / scale;
    var hi = parseFloat($("clip-hi").value) / scale;
    if (!isFinite(lo) || !isFinite(hi) || lo >= hi) {
      showMessage("The colour range needs two numbers, low < high.", "info");
      return;
    }
    showMessage("");
    state.clip = [lo, hi];
    if (gd.data) Plotly.relayout(gd, { "coloraxis.cmin": lo, "coloraxis.cmax": hi });
  }

  function renderNotes(payload) {
    var seen = {};
    var notes = [];
    Object.keys(payload.landscapes || {}).forEach(function (v) {
      (payload.landscapes[v].notes || []).forEach(function (n) {
        if (!seen[n]) { seen[n] = true; notes.push(n); }
      });
    });
    if (!Object.keys(payload.landscapes || {}).length) notes.push("No trials recorded yet: the landscape appears once the sweep starts.");
    var box = $("notes");
    box.hidden = notes.length === 0;
    box.textContent = notes.join(" \u00b7 ");
  }

  function renderFigure(payload) {
    var fig = payload.figure || { data: [], layout: {} };
    var layout = Object.assign({}, fig.layout, { autosize: true, uirevision: "keep" });
    delete layout.width;
    if (state.clip) {
      layout.coloraxis = Object.assign({}, layout.coloraxis, { cmin: state.clip[0], cmax: state.clip[1] });
    }
    var started = performance.now();
    return Plotly.react(gd, fig.data, layout, plotConfig).then(function () {
      window.hpscape.renders += 1;
      window.hpscape.lastRenderMs = performance.now() - started;
      if (window.hpscape.firstRenderMs === null) window.hpscape.firstRenderMs = performance.now();
      if (!state.bound) {
        state.bound = true;
        gd.on("plotly_click", onClick);
      }
    });
  }

  function renderCoupling(payload) {
    var table = $("coupling");
    var metric = payload.metric;
    var rows = ["<tr><th class=left>variant</th><th>best</th><th>at lr</th><th>at wd</th><th>ridge slope</th>" +
      "<th>rows</th><th>separability</th><th>basin cells</th><th>cells</th><th class=left>notes</th></tr>"];
    (payload.variants || []).forEach(function (v) {
      var c = payload.landscapes[v].coupling || {};
      var best = c.best || {};
      rows.push("<tr><td class=left>" + esc(v) + "</td><td>" + fmt(metric, best.value) + "</td><td>" + sci(best.lr) +
        "</td><td>" + sci(best.weight_decay) + "</td><td>" + num(c.ridge_slope, 2, true) + "</td><td>" +
        (c.ridge_rows || 0) + "</td><td>" + num(c.separability, 2) + "</td><td>" + (c.basin_cells || 0) +
        "</td><td>" + (c.n_cells || 0) + "</td><td class=left>" + esc((c.notes || []).join("; ")) + "</td></tr>");
    });
    table.innerHTML = rows.join("");
  }

  function num(v, digits, signed) {
    if (v === null || v === undefined || !isFinite(v)) return "\u2014";
    return (signed && v > 0 ? "+" : "") + Number(v).toFixed(digits);
  }

  function esc(s) {
    return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  // ------------------------------------------------------------------------------------------
  // A clicked cell: its learning curves and its trials

  function indexOf(values, v) {
    for (var i = 0; i < values.length; i++) if (values[i] === v) return i;
    return -1;
  }

  function onClick(event) {
    var pt = event && event.points && event.points[0];
    var meta = pt && pt.data && pt.data.meta;
    if (!meta || (meta.role !== "panel" && meta.role !== "diff")) return;
    var row = pt.y, col = pt.x;
    var picks = [];
    var lands = state.payload.landscapes;
    if (meta.role === "panel") {
      picks.push({ variant: meta.variant, row: row, col: col });
    } else {
      meta.pair.forEach(function (v) {
        var l = lands[v];
        var r = indexOf(l.lr, meta.lr[row]);
        var c = indexOf(l.weight_decay, meta.weight_decay[col]);
        if (r >= 0 && c >= 0) picks.push({ variant: v, row: r, col: c });
      });
    }
    state.cell = picks;
    loadTable(picks);
  }

  function cellLabel(pick) {
    var l = state.payload.landscapes[pick.variant];
    return pick.variant + " lr " + sci(l.lr[pick.row]) + " wd " + sci(l.weight_decay[pick.col]);
  }

  function loadTable(picks) {
    if (!state.payload) return Promise.resolve();
    var requests;
    if (picks && picks.length) {
      requests = picks.map(function (p) {
        var numbers = state.payload.landscapes[p.variant].trials[p.row][p.col];
        if (!numbers.length) return Promise.resolve({ variant: p.variant, rows: [] });
        return api(sweepPath("/landscape/trials"), { variant: p.variant, numbers: numbers.join(","), metric: state.metric })
          .then(function (r) { return r.json(); })
          .then(function (body) { return { variant: p.variant, rows: body.items }; });
      });
      $("table-title").textContent = "Trials of " + picks.map(cellLabel).join(" and ");
    } else {
      var variant = $("table-variant").value || (state.payload.variants || [])[0];
      if (!variant) return Promise.resolve();
      requests = [api(sweepPath("/landscape/trials"), { variant: variant, limit: 20, metric: state.metric })
        .then(function (r) { return r.json(); })
        .then(function (body) { return { variant: variant, rows: body.items }; })];
      $("table-title").textContent = "Best trials of " + variant + " (" + state.metric.replace(/_/g, " ") + ")";
    }
    return Promise.all(requests).then(function (groups) {
      renderTable(groups);
      if (picks && picks.length) renderCurves(groups, picks);
    }).catch(function (err) {
      showMessage(err instanceof ApiError ? err.message : String(err));
    });
  }

  function renderTable(groups) {
    var metric = state.metric;
    var others = ["test_error", "test_loss", "train_loss", "train_error"].filter(function (m) { return m !== metric; });
    var html = ["<tr><th class=left>variant</th><th>#</th><th>lr</th><th>weight decay</th><th>seed</th>" +
      "<th class=left>state</th><th>epochs</th><th>" + esc(metric.replace(/_/g, " ")) + "</th>" +
      others.map(function (m) { return "<th>" + m.replace(/_/g, " ") + "</th>"; }).join("") + "</tr>"];
    groups.forEach(function (g) {
      g.rows.forEach(function (t) {
        html.push("<tr><td class=left>" + esc(g.variant) + "</td><td>" + t.number + "</td><td>" + sci(t.lr) +
          "</td><td>" + sci(t.weight_decay) + "</td><td>" + (t.seed === null || t.seed === undefined ? "" : t.seed) +
          "</td><td class=left>" + esc(t.state) + "</td><td>" + (t.epochs_done || 0) + " / " + (t.epochs_budget || "?") +
          "</td><td>" + fmt(metric, t.value) + "</td>" +
          others.map(function (m) { return "<td>" + fmt(m, t[m]) + "</td>"; }).join("") + "</tr>");
      });
    });
    if (html.length === 1) html.push("<tr><td class=left colspan=11>no trials</td></tr>");
    $("trials").innerHTML = html.join("");
  }

  function renderCurves(groups, picks) {
    var traces = [];
    var curveMetric = null;
    groups.forEach(function (g) {
      g.rows.forEach(function (t) {
        curveMetric = t.curve_metric;
        traces.push({
          type: "scatter",
          mode: "lines+markers",
          marker: { size: 4 },
          name: g.variant + " #" + t.number + (t.seed !== null && t.seed !== undefined ? " (seed " + t.seed + ")" : ""),
          x: t.curve.map(function (p) { return p[0]; }),
          y: t.curve.map(function (p) { return p[1]; }),
        });
      });
    });
    $("curves-hint").textContent = traces.length ? "" : "No epochs recorded for this cell yet.";
    $("curves-title").textContent = "Learning curves: " + picks.map(cellLabel).join(" vs ");
    var layout = {
      margin: { t: 10, r: 10, b: 44, l: 64 },
      xaxis: { title: { text: "epoch" } },
      yaxis: { title: { text: (curveMetric || "").replace(/_/g, " ") }, tickformat: isError(curveMetric) ? ".1%" : "" },
      legend: { font: { size: 10 } },
      showlegend: true,
    };
    return Plotly.react(curvesDiv, traces, layout, { displaylogo: false, responsive: true });
  }

  // ------------------------------------------------------------------------------------------
  // Exports

  function fileStem() {
    var sweep = (state.payload && state.payload.sweep) || {};
    var name = sweep.record_name || sweep.name || config.sweep_id;
    return name + "-" + state.metric + (state.epoch ? "-epoch" + state.epoch : "");
  }

  function exportAs(format) {
    return api(sweepPath("/landscape/export"), landscapeParams({ format: format }))
      .then(function (r) { return r.blob(); })
      .then(function (blob) {
        var a = document.createElement("a");
        a.href = URL.createObjectURL(blob);
        a.download = fileStem() + "." + format;
        document.body.appendChild(a);
        a.click();
        window.setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
      })
      .catch(function (err) { showMessage(err instanceof ApiError ? err.message : String(err)); });
  }

  domReady.then(function () {
    gd = $("figure");
    curvesDiv = $("curves");
    // Bound at once (not with the other controls): a page without a token never renders until it has one.
    $("token-save").addEventListener("click", function () {
      try { window.localStorage.setItem("hpscape.token", $("token").value.trim()); } catch (e) { /* private mode */ }
      reload();
      if (state.payload) loadTable(state.cell);
    });
  });
  load();
})();

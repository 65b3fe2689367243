/* The sweep page: fetches the landscape (with its plotly figure) and polls while the sweep runs.
   Everything the page shows comes from GET {api}/sweeps/{id}/landscape; the figure is built by
   the server (dashboards.figures), so the exported HTML and this page draw the same thing.
   Landscapes are keyed by study key ('VARIANT', or 'VARIANT/AXIS=VALUE' with a facet); each carries its axes as "y" (vertical) and
   "x" (horizontal): name, values, scale and title. Requests and the token go through api.js. */
(function () {
  "use strict";

  // This script runs in <head>, before plotly.min.js: the first landscape request goes out at
  // once and the server builds it while the browser compiles plotly.js. The DOM work waits.
  var api = window.hpscapeApi;
  var config = api.config;
  var esc = api.esc;
  var domReady = api.domReady;
  var plotConfig = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
  var gd = null;
  var curvesDiv = null;
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
    curveMetric: null, // the learning curves' metric; null: follow the landscape's
    curveGroups: null, // the clicked cell's trials, kept to redraw the curves for another metric
    curvePicks: null,
  };
  // Read by the browser test and handy in the console.
  window.hpscape = { state: state, renders: 0, firstRenderMs: null, lastRenderMs: null, loads: 0 };

  function $(id) { return document.getElementById(id); }

  function isError(metric) { return /error$/.test(metric || ""); }

  function words(name) { return String(name || "").replace(/_/g, " "); }

  function fmt(metric, v, signed) {
    if (v === null || v === undefined || !isFinite(v)) return "\u2014";
    var s = signed && v > 0 ? "+" : "";
    return isError(metric) ? s + (100 * v).toFixed(2) + " %" : s + Number(v).toPrecision(4);
  }

  // An axis value as the tables write it: 3 significant digits on log axes, the number itself on linear ones.
  function axisValue(axis, v) {
    if (v === null || v === undefined) return "\u2014";
    if (v === 0) return "0";
    var log = axis && (axis.scale === "log2" || axis.scale === "log10");
    return log ? Number(v).toPrecision(3) : String(+Number(v).toPrecision(6));
  }

  function showMessage(text, kind) {
    var box = $("message");
    if (!text) { box.hidden = true; box.textContent = ""; return; }
    box.hidden = false;
    box.className = "message" + (kind ? " " + kind : "");
    box.textContent = text;
  }

  function sweepPath(suffix) { return "/sweeps/" + encodeURIComponent(config.sweep_id) + suffix; }

  function landscapeParams(extra) {
    var p = { metric: state.metric, epoch: state.epoch, model: state.model ? "true" : "" };
    if (state.clip) { p.clip_lo = state.clip[0]; p.clip_hi = state.clip[1]; }
    return Object.assign(p, extra || {});
  }

  function landscapeOf(key) { return state.payload.landscapes[key]; }

  // The study's trials endpoint wants the variant and, in a faceted sweep, the facet ("schedule=step").
  function studyParams(key) {
    var l = landscapeOf(key);
    return { variant: l.variant, facet: l.facet ? l.facet.label : "" };
  }

  // One header for an axis over several studies: its title when they agree, else its label (the decay's symbol
  // is λ′ on L2 panels, λ on decoupled ones).
  function sharedTitle(keys, which) {
    var titles = {}, label = "";
    keys.forEach(function (k) {
      var axis = landscapeOf(k)[which];
      titles[axis.title] = true;
      label = axis.label + (axis.unit ? " (" + axis.unit + ")" : "");
    });
    var list = Object.keys(titles);
    return list.length === 1 ? list[0] : label;
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
    // An ended sweep's WAITING trials never run (a cancel leaves them): only running ones can still change.
    if (status) return api.TERMINAL.indexOf(status) >= 0 && (p.running || 0) === 0;
    return active === 0 && (p.total || 0) > 0;
  }

  // The other views this sweep's spec supports (facets, curves, budget), linked from the header once.
  function loadViews() {
    return api.getJson(sweepPath("/views")).then(function (body) {
      return domReady.then(function () {
        var shows = {};
        Object.keys(body.views || {}).forEach(function (v) { shows[v] = body.views[v].shows; });
        api.viewLinks(document.getElementById("views"), body.available, "landscape", shows);
      });
    }).catch(function () { /* the landscape request reports errors; the links are an extra */ });
  }

  function load() {
    if (!state.viewsLoaded) { state.viewsLoaded = true; loadViews(); }
    if (state.loading) { state.pending = true; return Promise.resolve(); }
    state.loading = true;
    window.hpscape.loads += 1;
    var request = api.getJson(sweepPath("/landscape"), landscapeParams({ figure: "true" }));
    return Promise.all([request, domReady]).then(function (results) { return results[0]; })
      .then(function (payload) {
        api.showAuth(false);
        showMessage(state.notice || "", "info");
        render(payload);
      })
      .catch(function (err) {
        return domReady.then(function () {
          if (err instanceof api.ApiError && err.status === 422 && state.epoch) {
            // A metric not recorded at that epoch (records without per-epoch history): the server says why;
            // keep its reason on screen and show the final epoch instead.
            state.notice = err.message + " Showing the final epoch.";
            state.epoch = "";
            $("epoch").value = "";
            state.pending = true;
            return;
          }
          if (err instanceof api.ApiError) {
            showMessage(err.status === 404 ? "No such sweep: " + err.message : err.message);
          } else {
            showMessage(api.errorText(err) + "; retrying.");
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
    // A sweep that ended keeps its unrun trials WAITING in the record: they will not run, so they are not "queued".
    var ended = api.TERMINAL.indexOf(status) >= 0;
    ["running", "queued", "diverged", "stopped", "failed"].forEach(function (k) {
      if (p[k]) parts.push(p[k] + " " + (k === "queued" && ended ? "not run (" + status + ")" : k));
    });
    $("progress-text").textContent = parts.join(" \u00b7 ");
  }

  function addOption(select, value, text) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    select.appendChild(o);
  }

  function initControls(payload) {
    var metricSel = $("metric");
    var curveSel = $("curve-metric");
    (payload.metrics || []).forEach(function (m) {
      addOption(metricSel, m, words(m));
      addOption(curveSel, m, words(m));
    });
    metricSel.value = payload.metric;
    curveSel.value = payload.metric;
    state.metric = payload.metric;
    var epochSel = $("epoch");
    var sweep = payload.sweep || {};
    var epochs = sweep.max_epochs || sweep.epochs || 0;
    for (var e = 1; e < epochs; e++) addOption(epochSel, String(e), String(e));
    var tableSel = $("table-variant");
    (payload.keys || []).forEach(function (k) { addOption(tableSel, k, payload.landscapes[k].title || k); });
    var binned = (payload.keys || []).some(function (k) { return payload.landscapes[k].kind === "binned"; });
    $("model-toggle").hidden = !binned;

    metricSel.addEventListener("change", function () {
      state.metric = metricSel.value;
      state.notice = null;
      state.clip = null;
      state.cell = null;
      if (state.curveMetric === null) curveSel.value = state.metric;
      reload();
    });
    epochSel.addEventListener("change", function () { state.epoch = epochSel.value; state.notice = null; reload(); });
    curveSel.addEventListener("change", function () {
      state.curveMetric = curveSel.value;
      if (state.curveGroups) renderCurves(state.curveGroups, state.curvePicks);
    });
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
    (payload.keys || []).forEach(function (k) {
      (payload.landscapes[k].notes || []).forEach(function (n) {
        if (!seen[n]) { seen[n] = true; notes.push(n); }
      });
    });
    if (!(payload.keys || []).length) notes.push("No trials recorded yet: the landscape appears once the sweep starts.");
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
    var keys = payload.keys || [];
    var metric = payload.metric;
    var table = $("coupling");
    if (!keys.length) { table.innerHTML = ""; return; }
    var first = payload.landscapes[keys[0]];
    $("coupling-ridge").textContent = "ridge slope: the line through each " + first.y.name + " row's optimum " +
      "between grid points, " + first.x.name + " against " + first.y.name + ", each in its axis's scale (" +
      first.x.scale + ", " + first.y.scale + ")" + (first.y.name === "lr" && first.x.name === "weight_decay" ?
      ": \u2248 \u22121 coupled, \u2248 0 decoupled" : "");
    var rows = ["<tr><th class=left>study</th><th>best</th><th>at " + esc(sharedTitle(keys, "y")) + "</th><th>at " +
      esc(sharedTitle(keys, "x")) + "</th><th>ridge slope [95 % interval]</th><th>rows</th>" +
      "<th class=left>verdict</th><th>interaction</th><th>separability</th><th>basin cells</th><th>basin area, " +
      "tilt</th><th>cells</th><th class=left>notes</th></tr>"];
    keys.forEach(function (k) {
      var l = payload.landscapes[k];
      var c = l.coupling || {};
      var best = c.best || {};
      var params = best.params || {};
      var axes = c.axes || [l.y.name, l.x.name];
      rows.push("<tr data-key='" + esc(k) + "'><td class=left>" + esc(l.title || k) + "</td><td>" +
        fmt(metric, best.value) + "</td><td>" + axisValue(l.y, params[axes[0]]) + "</td><td>" +
        axisValue(l.x, params[axes[1]]) + "</td><td>" + slopeText(c) + "</td><td>" + (c.ridge_rows || 0) +
        "</td><td class='left verdict " + esc(c.verdict || "") + "'>" + esc(c.verdict || "") + "</td><td>" +
        withInterval(c.interaction, c.interaction_ci) + "</td><td>" + num(c.separability, 2) + "</td><td>" +
        (c.basin_cells || 0) + "</td><td>" + basinText(c) + "</td><td>" + (c.n_cells || 0) +
        "</td><td class=left>" + esc((c.notes || []).join("; ")) + "</td></tr>");
    });
    table.innerHTML = rows.join("");
  }

  function withInterval(v, ci) {
    if (v === null || v === undefined) return "\u2014";
    var text = num(v, 2, false);
    return ci ? text + " [" + num(ci[0], 2, false) + ", " + num(ci[1], 2, false) + "]" : text;
  }

  function slopeText(c) {
    if (c.ridge_slope === null || c.ridge_slope === undefined) return "\u2014";
    var text = num(c.ridge_slope, 2, true);
    if (!c.ridge_slope_ci) return text + " (no interval)";
    return text + " [" + num(c.ridge_slope_ci[0], 2, true) + ", " + num(c.ridge_slope_ci[1], 2, true) + "]";
  }

  function basinText(c) {
    var area = c.basin_area === null || c.basin_area === undefined ? "open" : num(c.basin_area, 1, false);
    var tilt = c.basin_angle === null || c.basin_angle === undefined ? "" : ", " + num(c.basin_angle, 0, true) + "\u00b0";
    return area + tilt;
  }

  function num(v, digits, signed) {
    if (v === null || v === undefined || !isFinite(v)) return "\u2014";
    return (signed && v > 0 ? "+" : "") + Number(v).toFixed(digits);
  }

  // ------------------------------------------------------------------------------------------
  // A clicked cell: its learning curves and its trials

  function indexOf(values, v) {
    for (var i = 0; i < values.length; i++) {
      if (values[i] === v || Math.abs(values[i] - v) <= 1e-9 * Math.abs(v)) return i;
    }
    return -1;
  }

  function onClick(event) {
    var pt = event && event.points && event.points[0];
    var meta = pt && pt.data && pt.data.meta;
    if (!meta || (meta.role !== "panel" && meta.role !== "diff")) return;
    var row = pt.y, col = pt.x;
    var picks = [];
    if (meta.role === "panel") {
      picks.push({ key: meta.key, row: row, col: col });
    } else {
      // The difference map holds the cells both grids share: find them by value in each panel.
      meta.pair.forEach(function (k) {
        var l = landscapeOf(k);
        var r = indexOf(l.y.values, meta.y[row]);
        var c = indexOf(l.x.values, meta.x[col]);
        if (r >= 0 && c >= 0) picks.push({ key: k, row: r, col: c });
      });
    }
    state.cell = picks;
    loadTable(picks);
  }

  function axisText(axis, v) {
    var name = axis.label + (axis.symbol ? " " + axis.symbol : "");
    return name + " " + axisValue(axis, v) + (axis.unit ? " " + axis.unit : "");
  }

  function cellLabel(pick) {
    var l = landscapeOf(pick.key);
    return (l.title || pick.key) + " at " + axisText(l.y, l.y.values[pick.row]) + " \u00b7 " +
      axisText(l.x, l.x.values[pick.col]);
  }

  function loadTable(picks) {
    if (!state.payload) return Promise.resolve();
    var requests;
    if (picks && picks.length) {
      requests = picks.map(function (p) {
        var numbers = landscapeOf(p.key).trials[p.row][p.col];
        if (!numbers.length) return Promise.resolve({ key: p.key, rows: [] });
        var params = Object.assign(studyParams(p.key), { numbers: numbers.join(","), metric: state.metric });
        return api.getJson(sweepPath("/landscape/trials"), params)
          .then(function (body) { return { key: p.key, rows: body.items }; });
      });
      $("table-title").textContent = "Trials of " + picks.map(cellLabel).join(" and ");
    } else {
      var key = $("table-variant").value || (state.payload.keys || [])[0];
      if (!key) return Promise.resolve();
      var params = Object.assign(studyParams(key), { limit: 20, metric: state.metric });
      requests = [api.getJson(sweepPath("/landscape/trials"), params)
        .then(function (body) { return { key: key, rows: body.items }; })];
      $("table-title").textContent = "Best trials of " + (landscapeOf(key).title || key) + " (" +
        words(state.metric) + ")";
    }
    return Promise.all(requests).then(function (groups) {
      renderTable(groups);
      if (picks && picks.length) {
        state.curveGroups = groups;
        state.curvePicks = picks;
        renderCurves(groups, picks);
        renderCellPanel(groups, picks);
      }
    }).catch(function (err) {
      showMessage(api.errorText(err));
    });
  }

  function renderTable(groups) {
    var metric = state.metric;
    var keys = groups.map(function (g) { return g.key; });
    var first = landscapeOf(keys[0]);
    var axes = [first.y.name, first.x.name];
    var others = (state.payload.metrics || []).filter(function (m) { return m !== metric; });
    var html = ["<tr><th class=left>study</th><th>#</th><th>" + esc(sharedTitle(keys, "y")) + "</th><th>" +
      esc(sharedTitle(keys, "x")) + "</th><th>seed</th><th class=left>state</th><th>epochs</th><th>" +
      esc(words(metric)) + "</th>" + others.map(function (m) { return "<th>" + esc(words(m)) + "</th>"; }).join("") +
      "</tr>"];
    groups.forEach(function (g) {
      var l = landscapeOf(g.key);
      g.rows.forEach(function (t) {
        var params = t.params || {};
        html.push("<tr><td class=left>" + esc(l.title || g.key) + "</td><td>" + t.number + "</td><td>" +
          axisValue(l.y, params[axes[0]]) + "</td><td>" + axisValue(l.x, params[axes[1]]) + "</td><td>" +
          (t.seed === null || t.seed === undefined ? "" : t.seed) + "</td><td class=left>" + esc(t.state) +
          "</td><td>" + (t.epochs_done || 0) + " / " + (t.epochs_budget || "?") + "</td><td>" + fmt(metric, t.value) +
          "</td>" + others.map(function (m) { return "<td>" + fmt(m, t[m]) + "</td>"; }).join("") + "</tr>");
      });
    });
    if (html.length === 1) html.push("<tr><td class=left colspan=" + (8 + others.length) + ">no trials</td></tr>");
    $("trials").innerHTML = html.join("");
  }

  // One trial's curve of `metric`: from its per-epoch history; a record without history (hpscape 0.1) has only
  // "curve", the sweep's metric per epoch.
  function curveOf(t, metric) {
    if (Array.isArray(t.history) && t.history.length) {
      return {
        metric: metric,
        x: t.history.map(function (h) { return h.epoch; }),
        y: t.history.map(function (h) { var v = h[metric]; return v === undefined || !isFinite(v) ? null : v; }),
      };
    }
    return {
      metric: t.curve_metric,
      x: (t.curve || []).map(function (p) { return p[0]; }),
      y: (t.curve || []).map(function (p) { return p[1]; }),
    };
  }

  function renderCurves(groups, picks) {
    var metric = state.curveMetric || state.metric;
    var traces = [];
    var drawn = {};
    groups.forEach(function (g) {
      var l = landscapeOf(g.key);
      g.rows.forEach(function (t) {
        var curve = curveOf(t, metric);
        drawn[curve.metric] = true;
        traces.push({
          type: "scatter",
          mode: "lines+markers",
          marker: { size: 4 },
          name: (l.title || g.key) + " #" + t.number + (t.seed !== null && t.seed !== undefined ? " (seed " + t.seed + ")" : ""),
          x: curve.x,
          y: curve.y,
          meta: { key: g.key, number: t.number, metric: curve.metric },
        });
      });
    });
    var shown = Object.keys(drawn);
    var hint = traces.length ? "" : "No epochs recorded for this cell yet.";
    if (shown.some(function (m) { return m !== metric; })) {
      hint = "Some trials keep no per-epoch history (records from hpscape 0.1): their curves show " +
        shown.filter(function (m) { return m !== metric; }).map(words).join(", ") + ".";
    }
    $("curves-hint").textContent = hint;
    $("curves-title").textContent = "Learning curves: " + picks.map(cellLabel).join(" vs ");
    var yMetric = shown.length === 1 ? shown[0] : metric;
    var lastEpoch = Math.max.apply(null, [0].concat(traces.map(function (t) { return t.x.length ? t.x[t.x.length - 1] : 0; })));
    var layout = {
      margin: { t: 10, r: 10, b: 44, l: 64 },
      // Whole epochs only: plotly would put ticks at 1.5, 2.5 on a short run.
      // Whole epochs only: "2.5" is no epoch.
      xaxis: { title: { text: "epoch" }, dtick: lastEpoch <= 12 ? 1 : null, tickformat: "d", rangemode: "tozero" },
      yaxis: { title: { text: words(yMetric) }, tickformat: isError(yMetric) ? ".1%" : "" },
      legend: { font: { size: 10 } },
      showlegend: true,
    };
    return Plotly.react(curvesDiv, traces, layout, { displaylogo: false, responsive: true });
  }

  // ------------------------------------------------------------------------------------------
  // Inside a clicked cell: small multiples per seed (cell.js draws them)

  function renderCellPanel(groups, picks) {
    var items = [];
    groups.forEach(function (g) {
      var l = landscapeOf(g.key);
      g.rows.forEach(function (t) {
        var seed = t.seed !== null && t.seed !== undefined ? " (seed " + t.seed + ")" : "";
        items.push({ id: g.key + "#" + t.number, key: g.key, name: (l.title || g.key) + " #" + t.number + seed,
                     trial: t });
      });
    });
    return window.hpscapeCell.render(document.querySelector("section.detail"), items,
                                     "Inside the cell: " + picks.map(cellLabel).join(" vs "));
  }

  // ------------------------------------------------------------------------------------------
  // Exports

  function fileStem() {
    var sweep = (state.payload && state.payload.sweep) || {};
    var name = sweep.record_name || sweep.name || config.sweep_id;
    return name + "-" + state.metric + (state.epoch ? "-epoch" + state.epoch : "");
  }

  function exportAs(format) {
    return api.request(sweepPath("/landscape/export"), landscapeParams({ format: format }))
      .then(function (r) { return r.blob(); })
      .then(function (blob) {
        var a = document.createElement("a");
        a.href = URL.createObjectURL(blob);
        a.download = fileStem() + "." + format;
        document.body.appendChild(a);
        a.click();
        window.setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
      })
      .catch(function (err) { showMessage(api.errorText(err)); });
  }

  domReady.then(function () {
    gd = $("figure");
    curvesDiv = $("curves");
  });
  // Bound at once (not with the other controls): a page without a token never renders until it has one.
  api.onTokenSaved(function () {
    reload();
    if (state.payload) loadTable(state.cell);
  });
  load();
})();

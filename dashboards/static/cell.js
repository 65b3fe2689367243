/* Inside a clicked cell of the sweep page: small multiples, one line per trial (seed), of every metric, the norm of
   the scale-invariant weights and the angle they turn per step (measured, and the equilibrium the theory predicts),
   from the trials' per-epoch history (GET {api}/sweeps/{id}/landscape/trials). The telemetry fields
   (hpscape.workers.telemetry: weight_norm, angular_update, angular_update_theory) are optional: records trained
   before it lack them, and the panel says so. Exposed as window.hpscapeCell; sweep.js calls render(). */
(function () {
  "use strict";

  var PANELS = [
    { field: "test_error", title: "test error", pct: true },
    { field: "train_error", title: "train error", pct: true },
    { field: "weight_norm", title: "weight norm |w| (scale-invariant weights)", telemetry: true },
    { field: "test_loss", title: "test loss", log: true },
    { field: "train_loss", title: "train loss", log: true },
    { field: "angular_update", theory: "angular_update_theory", log: true, decades: true, telemetry: true,
      title: "angle per step (rad): measured \u2014, predicted - -" },
  ];
  var COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

  function words(name) { return String(name || "").replace(/_/g, " "); }

  // The panel goes after `anchor` (the page shell, dashboards.pages, has no place of its own for it).
  function container(anchor) {
    var box = document.getElementById("cell-panel");
    if (box) return box;
    box = document.createElement("section");
    box.id = "cell-panel";
    box.className = "cell-panel";
    box.innerHTML = "<h2 id=\"cell-panel-title\"></h2><p id=\"cell-panel-note\" class=\"muted\"></p>" +
      "<div id=\"cell-multiples\" class=\"multiples\"></div>";
    anchor.insertAdjacentElement("afterend", box);
    return box;
  }

  // One trial's per-epoch `field`: null where an epoch lacks it, or where a log axis cannot show it (<= 0).
  function series(trial, field, log) {
    var history = Array.isArray(trial.history) ? trial.history : [];
    return {
      x: history.map(function (h) { return h.epoch; }),
      y: history.map(function (h) {
        var v = h[field];
        return typeof v !== "number" || !isFinite(v) || (log && v <= 0) ? null : v;
      }),
    };
  }

  function has(trial, field) {
    return series(trial, field, false).y.some(function (v) { return v !== null; });
  }

  function numbers(items) {
    return items.map(function (i) { return "#" + i.trial.number; }).join(", ");
  }

  function notesFor(items) {
    var withHistory = items.filter(function (i) { return Array.isArray(i.trial.history) && i.trial.history.length; });
    var telemetry = withHistory.filter(function (i) {
      return has(i.trial, "weight_norm") || has(i.trial, "angular_update");
    });
    if (!items.length) return ["No trials in this cell yet."];
    if (!withHistory.length) return ["These trials keep no per-epoch history (records from hpscape 0.1)."];
    if (!telemetry.length) {
      return ["This record has no telemetry: its trials were trained before the weight norms and angles were " +
        "recorded, so only their metrics are drawn."];
    }
    var notes = ["One line per seed: every metric, the norm of the scale-invariant weights and the angle they turn " +
      "per step (solid: measured; dashed: the equilibrium predicted from \u03b1, \u03bb and the schedule)."];
    var missing = withHistory.filter(function (i) { return telemetry.indexOf(i) < 0; });
    if (missing.length) notes.push("Trials " + numbers(missing) + " have no telemetry.");
    var noTheory = telemetry.filter(function (i) { return !has(i.trial, "angular_update_theory"); });
    if (noTheory.length) {
      notes.push("No predicted angle for " + numbers(noTheory) + ": L2 inside an adaptive step has no closed-form " +
        "equilibrium.");
    }
    return notes;
  }

  // items: [{id, name, trial}] (a trial row of the trials endpoint, with its history); title: the panel's heading.
  function render(anchor, items, title) {
    container(anchor);
    var traces = [], annotations = [], legend = {};
    var layout = {
      height: 560, margin: { t: 30, r: 10, b: 50, l: 64 }, showlegend: true,
      legend: { orientation: "h", x: 0, y: -0.14, yanchor: "top", font: { size: 11 } },
      hovermode: "closest", font: { size: 11 },
    };
    PANELS.forEach(function (panel, p) {
      var ax = p === 0 ? "" : String(p + 1);
      var drawn = 0;
      items.forEach(function (item, k) {
        var colour = COLOURS[k % COLOURS.length];
        [[panel.field, "solid", "measured"], [panel.theory, "dash", "theory"]].forEach(function (line) {
          if (!line[0]) return;
          var c = series(item.trial, line[0], panel.log);
          if (!c.y.some(function (v) { return v !== null; })) return;
          drawn += 1;
          traces.push({
            type: "scatter", mode: "lines+markers", marker: { size: 3 }, x: c.x, y: c.y, xaxis: "x" + ax,
            yaxis: "y" + ax, name: item.name, legendgroup: item.id, showlegend: !legend[item.id],
            line: { color: colour, width: line[2] === "theory" ? 1.4 : 1.8, dash: line[1] },
            hovertemplate: item.name + "<br>" + words(line[0]) + ", epoch %{x}: %{y:.4g}<extra></extra>",
            meta: { id: item.id, number: item.trial.number, field: line[0], role: line[2] },
          });
          legend[item.id] = true;
        });
      });
      if (!drawn) {
        // An axis without a trace is not drawn at all, and the panel's title and note would land on another panel:
        // an empty trace keeps its place.
        traces.push({ type: "scatter", mode: "lines", x: [], y: [], xaxis: "x" + ax, yaxis: "y" + ax,
                      showlegend: false, hoverinfo: "skip", meta: { field: panel.field, role: "empty" } });
      }
      // Two rows of three, placed by hand (plotly's layout.grid drops axes it has no trace for).
      var column = p % 3, row = Math.floor(p / 3);
      layout["xaxis" + ax] = { title: { text: row === 1 ? "epoch" : "" }, tickformat: "d", zeroline: false,
                               domain: [column * 0.36, column * 0.36 + 0.28], anchor: "y" + ax };
      layout["yaxis" + ax] = { type: panel.log ? "log" : "linear", tickformat: panel.pct ? ".1%" : "",
                               zeroline: false, exponentformat: "power",
                               domain: row === 0 ? [0.6, 1.0] : [0.0, 0.4], anchor: "x" + ax };
      if (!drawn) {  // no made-up ticks (plotly's default ranges) around the note
        ["xaxis", "yaxis"].forEach(function (a) {
          Object.assign(layout[a + ax], { showticklabels: false, showgrid: false });
        });
      }
      // The angle spans decades: 1, 2 and 5 per decade (plotly labels every digit otherwise). The losses stay
      // within one, where plotly's own labels (0.4, 0.6, ...) read better than bare digits.
      if (panel.decades) layout["yaxis" + ax].dtick = "D2";
      annotations.push({ text: "<b>" + panel.title + "</b>", xref: "x" + ax + " domain", yref: "y" + ax + " domain",
                         x: 0, y: 1.02, xanchor: "left", yanchor: "bottom", showarrow: false, font: { size: 12 } });
      if (!drawn) {
        // Said where the lines would be, so that an empty panel never reads as "all zero".
        annotations.push({ text: panel.telemetry ? "this record has no telemetry" : "not recorded",
                           xref: "x" + ax + " domain", yref: "y" + ax + " domain", x: 0.5, y: 0.5, showarrow: false,
                           font: { size: 12, color: "#a33" } });
      }
    });
    layout.annotations = annotations;
    document.getElementById("cell-panel-title").textContent = title;
    document.getElementById("cell-panel-note").textContent = notesFor(items).join(" ");
    return Plotly.react(document.getElementById("cell-multiples"), traces, layout,
                        { displaylogo: false, responsive: true });
  }

  window.hpscapeCell = { render: render, panels: PANELS };
})();

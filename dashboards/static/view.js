/* The facet, curves, budget and mechanism views: GET {api}/sweeps/{id}/views/{view} returns the figures (built by the server,
   dashboards.views) and tables of the numbers they draw; this script draws them and polls while the sweep runs.
   Requests and the token go through api.js. */
(function () {
  "use strict";

  var api = window.hpscapeApi;
  var config = api.config;
  var esc = api.esc;
  var plotConfig = { displaylogo: false, responsive: true };
  var state = { metric: "", epoch: "", angle: "", timer: null, payload: null, loading: false };
  window.hpscape = { state: state, renders: 0 };

  function $(id) { return document.getElementById(id); }

  function viewPath(suffix) {
    return "/sweeps/" + encodeURIComponent(config.sweep_id) + "/views/" + config.view + (suffix || "");
  }

  function params() {
    var p = {};
    if (state.metric) p[config.view === "curves" ? "metrics" : "metric"] = state.metric;
    if (state.epoch) p.epoch = state.epoch;
    if (state.angle && config.view === "mechanism") p.angle = state.angle;
    return p;
  }

  function showMessage(text, kind) {
    var box = $("message");
    box.hidden = !text;
    box.className = "message" + (kind ? " " + kind : "");
    box.textContent = text || "";
  }

  function table(id, spec, titleId, title) {
    var el = $(id);
    if (!spec || !spec.rows) { el.hidden = true; if (titleId) $(titleId).hidden = true; return; }
    el.hidden = false;
    if (titleId) { $(titleId).hidden = false; $(titleId).textContent = title; }
    var head = "<thead><tr>" + spec.columns.map(function (c, i) {
      return "<th class=\"" + (i < 2 || c === "notes" ? "left" : "") + "\">" + esc(c) + "</th>";
    }).join("") + "</tr></thead>";
    var body = "<tbody>" + spec.rows.map(function (row) {
      return "<tr>" + row.map(function (v, i) {
        var cls = i < 2 ? "left" : "";
        if (spec.columns[i] === "notes") cls = "left note";  // sentences: wrapped, not one 2000 px line
        if (v === "coupled" || v === "separable" || v === "inconclusive") cls += " verdict " + v;
        return "<td class=\"" + cls + "\">" + esc(v) + "</td>";
      }).join("") + "</tr>";
    }).join("") + "</tbody>";
    el.innerHTML = head + body;
  }

  function fillControls(body) {
    var select = $("metric");
    if (!select.options.length) {
      (body.metrics || []).forEach(function (m) {
        var o = document.createElement("option");
        o.value = m; o.textContent = m.replace(/_/g, " ");
        select.appendChild(o);
      });
      select.value = body.metric;
      state.metric = body.metric;
    }
    if (config.view === "mechanism" && !$("angle")) angleControl(body.angle);
    var nav = $("views");
    if (!nav.childNodes.length) api.viewLinks(nav, body.views, config.view, config.views);
    var status = $("sweep-status");
    status.textContent = body.sweep.status;
    status.className = "badge " + body.sweep.status;
  }

  // The mechanism's x axis: the predicted equilibrium angle or the measured one (the page shell has no such
  // control, since only this view has the choice).
  function angleControl(current) {
    var label = document.createElement("label");
    label.id = "angle-box";
    label.appendChild(document.createTextNode("angle "));
    var select = document.createElement("select");
    select.id = "angle";
    [["theory", "predicted (theory)"], ["measured", "measured"]].forEach(function (pair) {
      var o = document.createElement("option");
      o.value = pair[0]; o.textContent = pair[1];
      select.appendChild(o);
    });
    select.value = current || "theory";
    state.angle = select.value;
    select.addEventListener("change", function (e) { state.angle = e.target.value; load(); });
    label.appendChild(select);
    $("metric-box").insertAdjacentElement("afterend", label);
  }

  function draw(body) {
    state.payload = body;
    fillControls(body);
    showMessage("");
    var notes = body.notes || [];
    $("notes").hidden = !notes.length;
    $("notes").textContent = notes.join(" · ");
    Plotly.react($("figure"), body.figure.data, body.figure.layout, plotConfig);
    if (body.generalization) {
      $("figure2").hidden = false;
      Plotly.react($("figure2"), body.generalization.data, body.generalization.layout, plotConfig);
    }
    var second = body.anytime_table ? ["anytime_table", "Anytime performance: warm restarts against one cosine period"]
      : body.trend_table ? ["trend_table", "How the optimum moves with the budget"] : null;
    table("table", body.table);
    var definition = $("definition");
    if (body.definition && !definition) {
      definition = document.createElement("p");
      definition.id = "definition";
      definition.className = "muted";
      $("table").insertAdjacentElement("afterend", definition);
    }
    if (definition) definition.textContent = body.definition || "";
    if (second) table("table2", body[second[0]], "table2-title", second[1]);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString() + " (" + body.server_ms + " ms)";
    window.hpscape.renders += 1;
  }

  function load() {
    if (state.loading) return;
    state.loading = true;
    api.getJson(viewPath(""), params()).then(function (body) {
      draw(body);
      schedule(api.TERMINAL.indexOf(body.sweep.status) < 0);
    }).catch(function (err) {
      showMessage(api.errorText(err));
      schedule(err.status === undefined || err.status >= 500);
    }).then(function () { state.loading = false; });
  }

  function schedule(again) {
    clearTimeout(state.timer);
    if (again && $("live").checked) state.timer = setTimeout(load, config.poll_ms);
  }

  function download(format) {
    var p = Object.assign(params(), { format: format });
    api.request(viewPath("/export"), p).then(function (r) { return r.blob(); }).then(function (blob) {
      var a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = config.sweep_id + "-" + config.view + "." + format;
      document.body.appendChild(a);
      a.click();
      a.remove();
    }).catch(function (err) { showMessage(api.errorText(err)); });
  }

  $("metric").addEventListener("change", function (e) { state.metric = e.target.value; load(); });
  $("live").addEventListener("change", function () { schedule(true); });
  Array.prototype.forEach.call(document.querySelectorAll("[data-export]"), function (b) {
    b.addEventListener("click", function () { download(b.getAttribute("data-export")); });
  });
  api.onTokenSaved(load);
  load();
})();

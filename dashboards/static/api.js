/* What both pages share (loaded before sweep.js and sweeps.js): the page's config, the API token kept in
   localStorage, requests with the bearer header, the error text of the API's bodies, and the token form
   (#auth, shown on a 401). Exposed as window.hpscapeApi. */
(function () {
  "use strict";

  var TOKEN_KEY = "hpscape.token";
  var TERMINAL = ["succeeded", "failed", "cancelled"];
  var config = JSON.parse(document.getElementById("hpscape-config").textContent);
  // ?poll=SECONDS overrides the refresh interval (tests, slow links).
  var pollParam = parseFloat(new URLSearchParams(window.location.search).get("poll"));
  if (isFinite(pollParam) && pollParam > 0) config.poll_ms = Math.max(200, pollParam * 1000);
  // The scripts may run in <head> (sweep.js does, to send its first request early): DOM work waits for this.
  var domReady = new Promise(function (resolve) {
    if (document.readyState !== "loading") resolve();
    else document.addEventListener("DOMContentLoaded", function () { resolve(); });
  });

  function token() {
    try { return window.localStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  function setToken(value) {
    try { window.localStorage.setItem(TOKEN_KEY, String(value || "").trim()); } catch (e) { /* private mode */ }
  }

  function headers() {
    var t = token();
    return t ? { Authorization: "Bearer " + t } : {};
  }

  // Parameters that are null, undefined, "" or false are left out (0 is kept).
  function url(path, params) {
    var u = new URL(config.api + path, window.location.origin);
    Object.keys(params || {}).forEach(function (k) {
      var v = params[k];
      if (v !== null && v !== undefined && v !== "" && v !== false) u.searchParams.set(k, String(v));
    });
    return u.toString();
  }

  // The API's error bodies: {"detail": "text"} or {"detail": [{"loc": [...], "msg": "..."}]} (422).
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

  function ApiError(status, message) {
    this.name = "ApiError";
    this.status = status;
    this.message = message;
  }
  ApiError.prototype = Object.create(Error.prototype);
  ApiError.prototype.constructor = ApiError;

  function showAuth(visible) {
    domReady.then(function () {
      var form = document.getElementById("auth");
      if (form) form.hidden = !visible;
    });
  }

  // fetch with the token; resolves to the Response when it is ok, rejects with an ApiError otherwise.
  function request(path, params) {
    return fetch(url(path, params), { headers: headers() }).then(function (response) {
      if (response.ok) return response;
      return response.text().then(function (text) {
        var body = null;
        try { body = JSON.parse(text); } catch (e) { body = { detail: text }; }
        if (response.status === 401) showAuth(true);
        throw new ApiError(response.status, detailText(body, response.status));
      });
    });
  }

  function getJson(path, params) {
    return request(path, params).then(function (r) { return r.json(); });
  }

  function errorText(err) {
    return err instanceof ApiError ? err.message : "Could not reach the server (" + err + ")";
  }

  // The token form: what is typed is stored, the form hidden, and `onSaved` called (to load again).
  function onTokenSaved(onSaved) {
    domReady.then(function () {
      document.getElementById("token-save").addEventListener("click", function () {
        setToken(document.getElementById("token").value);
        onSaved();
      });
    });
  }

  function esc(s) {
    return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  // The links between a sweep's views (landscape, facets, curves, budget): those `available` for its spec, the
  // `current` one marked. `shows` maps a view to what it draws (the link's tooltip).
  function viewLinks(nav, available, current, shows) {
    var links = ["landscape"].concat((available || []).filter(function (v) { return v !== "landscape"; }));
    nav.innerHTML = links.length < 2 ? "" : links.map(function (v) {
      var href = config.pages + "/sweeps/" + encodeURIComponent(config.sweep_id) + (v === "landscape" ? "" : "/" + v);
      var cls = v === current ? " class=\"current\"" : "";
      return "<a" + cls + " href=\"" + esc(href) + "\" title=\"" + esc((shows || {})[v] || "") + "\">" + esc(v) +
        "</a>";
    }).join(" · ");
  }

  window.hpscapeApi = {
    config: config,
    TERMINAL: TERMINAL,
    domReady: domReady,
    token: token,
    setToken: setToken,
    headers: headers,
    url: url,
    request: request,
    getJson: getJson,
    detailText: detailText,
    errorText: errorText,
    ApiError: ApiError,
    showAuth: showAuth,
    onTokenSaved: onTokenSaved,
    esc: esc,
    viewLinks: viewLinks,
  };
})();

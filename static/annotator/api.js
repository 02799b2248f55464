/*
 * The pages' one way to call the JSON API (plain script, no build step; load it before the page's script).
 *
 *   const result = await DeepMinerApi.send(url, { method: "PUT", body: {...} });
 *   result.ok        true for 2xx
 *   result.conflict  true for 409: someone saved since this page loaded; result.extra has
 *                    {version, current} of what the server holds now
 *   result.offline   true when the server could not be reached (result.status is 0)
 *   result.data      the parsed JSON answer ({} when there is none)
 *   result.message   for an error: the API's own message ({message, extra} from api/errors.py), with the
 *                    fields' reasons of a 400 added; "" when the API gave none (the page words a fallback)
 *
 * Writes carry Django's CSRF token; every request sends the session cookie and asks for JSON.
 */
(function (root) {
  "use strict";

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // The reasons DRF gives per field ({"recognizable": ["…"], "phenomena": [{"concept": ["…"]}]}), as text.
  function reasons(extra, prefix) {
    if (extra === null || extra === undefined || extra === "") return [];
    if (typeof extra !== "object") return [prefix ? `${prefix}: ${extra}` : String(extra)];
    if (Array.isArray(extra)) return extra.flatMap((item) => reasons(item, prefix));
    return Object.entries(extra).flatMap(([field, value]) =>
      reasons(value, field === "non_field_errors" ? prefix : prefix ? `${prefix}.${field}` : field));
  }

  function errorMessage(status, data) {
    const message = data && data.message ? String(data.message) : "";
    if (status !== 400 || !data || !data.extra || typeof data.extra !== "object") return message;
    const details = reasons(data.extra, "").filter((text) => text !== message);
    return details.length ? `${message || "Invalid input."} ${details.join("; ")}` : message;
  }

  async function send(url, options) {
    const method = (options && options.method) || "GET";
    const headers = { Accept: "application/json" };
    const init = { method, credentials: "same-origin", headers };
    if (options && options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrfToken();
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      return { ok: false, status: 0, offline: true, conflict: false, data: {}, extra: {}, message: "" };
    }
    const data = await response.json().catch(() => ({}));
    return {
      ok: response.ok,
      status: response.status,
      offline: false,
      conflict: response.status === 409,
      data,
      extra: (!response.ok && data && data.extra) || {},
      message: response.ok ? "" : errorMessage(response.status, data),
    };
  }

  root.DeepMinerApi = {
    csrfToken,
    errorMessage,
    send,
    get: (url) => send(url),
    put: (url, body) => send(url, { method: "PUT", body }),
  };
})(window);

// Live job table: poll the jobs API and update each row's status, progress bar and message in place.
(function () {
  "use strict";
  const POLL_MS = 1000;
  const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

  function label(status) { return status.charAt(0).toUpperCase() + status.slice(1); }

  function updateRow(row, job) {
    const pct = Math.round(job.progress * 100);
    row.dataset.status = job.status;
    const badge = row.querySelector('[data-field="status"]');
    badge.className = "badge status-" + job.status;
    badge.textContent = label(job.status);
    row.querySelector(".bar").setAttribute("aria-valuenow", String(pct));
    row.querySelector(".bar .fill").style.width = pct + "%";
    row.querySelector('[data-field="percent"]').textContent = pct + "%";
    const message = row.querySelector('[data-field="message"]');
    message.textContent = job.message;
    message.title = job.error || "";
    const started = row.querySelector('[data-field="started"]');
    if (started && job.started_at) started.textContent = new Date(job.started_at).toLocaleTimeString();
    if (FINISHED.has(job.status)) {
      const cancel = row.querySelector("form");
      if (cancel) cancel.remove();
    }
  }

  async function poll(table) {
    const rows = table.querySelectorAll("tr[data-job-id]");
    const open = Array.from(rows).some((r) => !FINISHED.has(r.dataset.status));
    try {
      const url = table.dataset.pollUrl + (table.dataset.pollUrl.includes("?") ? "&" : "?") + "limit=50";
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const data = await response.json();
        const newest = Math.max(0, ...Array.from(rows).map((r) => Number(r.dataset.jobId)));
        let unseen = false;
        for (const job of data.results) {
          const row = table.querySelector('tr[data-job-id="' + job.id + '"]');
          if (row) updateRow(row, job); else if (job.id > newest) unseen = true;
        }
        // A job started elsewhere: reload once so it gets a full row (with its cancel button).
        if (unseen && !document.hidden) { window.location.reload(); return; }
      }
    } catch (err) { /* network hiccup: try again next tick */ }
    window.setTimeout(() => poll(table), open ? POLL_MS : POLL_MS * 3);
  }

  document.querySelectorAll("table.jobs[data-poll-url]").forEach((table) => poll(table));
})();

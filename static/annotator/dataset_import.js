// An import's page: once its job ends, reload so the page shows the bad rows or the imported dataset.
(function () {
  "use strict";
  const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
  const card = document.getElementById("import-job");
  if (!card || FINISHED.has(card.dataset.status)) return;

  async function poll() {
    try {
      const response = await fetch(card.dataset.jobUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok && FINISHED.has((await response.json()).status)) { window.location.reload(); return; }
    } catch (err) { /* network hiccup: try again next tick */ }
    window.setTimeout(poll, 1000);
  }
  poll();
})();

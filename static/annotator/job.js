// The job page, live: poll the job API while the job runs and update its status, progress, timings, log and
// error in place, and draw a training job's loss and validation-AUC curves from the epochs it has finished
// (job.result.history, written after every epoch). SVG built through the DOM: no inline code for the CSP.
(function () {
  "use strict";
  const POLL_MS = 1000;
  const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
  const PALETTE = ["#2f5fd0", "#2e9e5b", "#d63b3b", "#b7791f", "#7c3aed", "#0891b2"];
  const SVG = "http://www.w3.org/2000/svg";
  const root = document.getElementById("job");
  if (!root) return;
  const field = (name) => root.querySelector(`[data-field="${name}"]`);

  function label(status) { return status.charAt(0).toUpperCase() + status.slice(1); }

  function when(iso) { return iso ? new Date(iso).toLocaleString() : "—"; }

  function duration(job) {
    if (!job.started_at) return "—";
    const end = job.finished_at ? new Date(job.finished_at) : new Date();
    let seconds = Math.max(0, Math.round((end - new Date(job.started_at)) / 1000));
    const parts = [];
    for (const [unit, size] of [["h", 3600], ["min", 60]]) {
      if (seconds >= size) { parts.push(`${Math.floor(seconds / size)} ${unit}`); seconds %= size; }
    }
    parts.push(`${seconds} s`);
    return parts.join(" ") + (job.finished_at ? "" : " so far");
  }

  function node(tag, attrs, text) {
    const el = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // series: [{name, points: [[epoch, value], ...]}]; values null are left out. Mirrors annotator/plots.py.
  // The x axis spans every epoch the job will run (xMax), so the curves grow across it as epochs finish.
  function lineChart(series, title, yLabel, yRange, xMax) {
    const width = 520, height = 300, left = 52, right = 12, top = 28, bottom = 40;
    const plotW = width - left - right, plotH = height - top - bottom;
    const points = series.flatMap((s) => s.points);
    const svg = node("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
    if (!points.length) {
      svg.appendChild(node("text", { x: 20, y: 40 }, "No epoch finished yet"));
      return svg;
    }
    const x0 = 1, x1 = Math.max(2, xMax || 0, ...points.map((p) => p[0]));
    let [y0, y1] = yRange || [Math.min(...points.map((p) => p[1])), Math.max(...points.map((p) => p[1]))];
    if (y1 === y0) y1 = y0 + 1;
    const sx = (x) => left + ((x - x0) / (x1 - x0)) * plotW;
    const sy = (y) => top + (1 - (y - y0) / (y1 - y0)) * plotH;
    svg.appendChild(node("text", { x: left, y: 16, class: "chart-title" }, title));
    svg.appendChild(node("rect", { x: left, y: top, width: plotW, height: plotH, class: "chart-frame" }));
    for (let i = 0; i < 5; i++) {
      const tick = y0 + (i * (y1 - y0)) / 4;
      svg.appendChild(node("line", { x1: left, x2: left + plotW, y1: sy(tick), y2: sy(tick), class: "chart-grid" }));
      svg.appendChild(node("text", { x: left - 6, y: sy(tick) + 4, class: "chart-tick", "text-anchor": "end" }, tick.toFixed(2)));
    }
    const step = Math.max(1, Math.ceil((x1 - x0) / 5));
    for (let tick = x0; tick <= x1; tick += step) {
      svg.appendChild(node("text", { x: sx(tick), y: top + plotH + 14, class: "chart-tick", "text-anchor": "middle" }, String(tick)));
    }
    svg.appendChild(node("text", { x: left + plotW / 2, y: height - 6, class: "chart-axis", "text-anchor": "middle" }, "epoch"));
    svg.appendChild(node("text", { x: 12, y: top + plotH / 2, class: "chart-axis", "text-anchor": "middle",
      transform: `rotate(-90 12 ${top + plotH / 2})` }, yLabel));
    series.forEach((s, index) => {
      const color = PALETTE[index % PALETTE.length];
      const xy = s.points.map(([x, y]) => [sx(x), sy(y)]);
      if (xy.length > 1) {
        svg.appendChild(node("polyline", { points: xy.map((p) => p.map((v) => v.toFixed(1)).join(",")).join(" "),
          class: "chart-line", stroke: color, "data-series": s.name }));
      }
      xy.forEach(([cx, cy]) => svg.appendChild(node("circle", { cx: cx.toFixed(1), cy: cy.toFixed(1), r: 3, fill: color })));
      const ly = top + 8 + index * 16;
      svg.appendChild(node("rect", { x: left + 8, y: ly, width: 10, height: 10, fill: color }));
      svg.appendChild(node("text", { x: left + 22, y: ly + 9, class: "chart-legend" }, s.name));
    });
    return svg;
  }

  function drawCurves(history, total) {
    const loss = document.getElementById("curve-loss"), auc = document.getElementById("curve-auc");
    if (!loss || !auc) return;
    const epochs = history.length;
    if (Number(loss.dataset.epochs) === epochs && loss.firstChild) return; // nothing new
    const pick = (key) => history.map((h) => [h.epoch, h[key]]).filter((p) => typeof p[1] === "number");
    loss.replaceChildren(lineChart([
      { name: "train loss", points: pick("train_loss") },
      { name: "validation loss", points: pick("val_loss") },
    ], "Loss per epoch", "cross-entropy", null, total));
    const classes = epochs ? Object.keys(history[0].val_auc || {}) : [];
    auc.replaceChildren(lineChart(classes.map((name) => ({
      name, points: history.map((h) => [h.epoch, (h.val_auc || {})[name]]).filter((p) => typeof p[1] === "number"),
    })), "Validation AUC per epoch (one vs rest)", "AUC", [0, 1], total));
    loss.dataset.epochs = auc.dataset.epochs = String(epochs);
  }

  function show(job) {
    root.dataset.status = job.status;
    const badge = field("status");
    badge.className = "badge status-" + job.status;
    badge.textContent = label(job.status);
    const pct = Math.round(job.progress * 100);
    root.querySelector(".bar").setAttribute("aria-valuenow", String(pct));
    root.querySelector(".bar .fill").style.width = pct + "%";
    field("percent").textContent = pct + "%";
    field("message").textContent = job.message;
    for (const name of ["created_at", "started_at", "finished_at", "heartbeat_at"]) field(name).textContent = when(job[name]);
    field("duration").textContent = duration(job);
    field("worker").textContent = job.worker || "—";
    field("device").textContent = job.device || "—";
    field("log").textContent = job.log || "Nothing logged yet.";
    field("error").textContent = job.error || "";
    field("error-card").hidden = !job.error;
    const shown = field("result");
    if (shown) shown.textContent = Object.keys(job.result || {}).length ? JSON.stringify(job.result, null, 2) : "—";
    const resume = field("resume");
    if (resume) {
      resume.hidden = !job.resumable;
      field("checkpointed").textContent = String((job.result || {}).checkpointed_epoch || "");
    }
    const cancel = field("cancel");
    if (cancel && FINISHED.has(job.status)) cancel.remove();
    const result = job.result || {};
    const study = field("study-link");  // a reader-study job links its study once stored
    if (study && result.reader_study && !study.querySelector("a")) {
      const link = document.createElement("a");
      link.href = study.dataset.url.replace("/0/", "/" + Number(result.reader_study) + "/");
      link.textContent = "study #" + Number(result.reader_study);
      study.replaceChildren(link, " (" + Number(result.items) + " items)");
    }
    drawCurves(result.history || [], Number(result.epochs || (job.params || {}).epochs) || 0);
  }

  async function poll() {
    const answer = await window.DeepMinerApi.get(root.dataset.apiUrl);
    if (answer.ok) show(answer.data);
    const status = answer.ok ? answer.data.status : root.dataset.status;
    if (!FINISHED.has(status)) window.setTimeout(poll, POLL_MS);
  }

  show(JSON.parse(document.getElementById("job-data").textContent));
  if (!FINISHED.has(root.dataset.status)) window.setTimeout(poll, POLL_MS);
})();

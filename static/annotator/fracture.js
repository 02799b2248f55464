// Fracture labelling page: descriptor form, live sentence, versioned save through the JSON API (api.js),
// keyboard-first flow (press ? for the map), the deep zoom viewer with window / level, and prefetching of
// the next images' pyramids.
(function () {
  "use strict";
  const api = window.DeepMinerApi;
  const dataNode = document.getElementById("fx-data");
  const form = document.getElementById("fx-form");
  if (!dataNode || !form) return;
  const data = JSON.parse(dataNode.textContent);
  form.addEventListener("submit", (event) => event.preventDefault()); // saves go through the API, never a post
  const S = window.DeepMinerSentences;
  const $ = (id) => document.getElementById(id);
  const sentenceEl = $("fx-sentence"), hintEl = $("fx-hint"), statusEl = $("fx-status");
  const messageEl = $("fx-message"), conflictEl = $("fx-conflict"), helpEl = $("fx-help");
  const DISPLACEMENT_KEYS = { 1: "undisplaced", 2: "mildly displaced", 3: "moderately displaced", 4: "severely displaced" };
  const LOCATION_KEYS = { s: "subcapital", t: "transcervical", b: "basicervical", r: "intertrochanteric", u: "subtrochanteric" };
  const TOGGLE_KEYS = { c: "comminuted", i: "impacted", a: "avulsed_fragment" };

  let version = data.version;
  let saved = data.label ? pick(data.label) : null; // what the server holds for me
  let conflict = null; // {version, current} of a refused save
  let busy = false;
  let leaving = false; // set once we navigate on purpose, so the unsaved-changes prompt stays quiet

  // --- form state ---------------------------------------------------------------------------
  function pick(label) {
    return {
      fracture: label.fracture, displacement: label.displacement || "", comminuted: !!label.comminuted,
      impacted: !!label.impacted, location: label.location || "", avulsed_fragment: !!label.avulsed_fragment,
    };
  }
  function radio(name) {
    const checked = form.querySelector(`input[name="${name}"]:checked`);
    return checked ? checked.value : "";
  }
  function read() {
    const f = radio("fracture");
    return {
      fracture: f === "" ? null : f === "yes", displacement: radio("displacement"),
      comminuted: form.elements.comminuted.checked, impacted: form.elements.impacted.checked,
      location: radio("location"), avulsed_fragment: form.elements.avulsed_fragment.checked,
    };
  }
  function setRadio(name, value) {
    form.querySelectorAll(`input[name="${name}"]`).forEach((input) => { input.checked = input.value === value; });
  }
  function write(label) {
    setRadio("fracture", label ? (label.fracture ? "yes" : "no") : "");
    setRadio("displacement", label ? label.displacement : "");
    setRadio("location", label ? label.location : "");
    form.elements.comminuted.checked = !!(label && label.comminuted);
    form.elements.impacted.checked = !!(label && label.impacted);
    form.elements.avulsed_fragment.checked = !!(label && label.avulsed_fragment);
  }
  function normalised(state) {
    // What a save would store: a no-fracture label carries nothing else.
    if (state.fracture === false) return { ...pick({ fracture: false }) };
    return state;
  }
  function same(a, b) {
    return !!a && !!b && JSON.stringify(normalised(a)) === JSON.stringify(normalised(b));
  }
  function missing(state) {
    if (state.fracture === null) return ["fracture or no fracture"];
    if (!state.fracture) return [];
    const out = [];
    if (!state.displacement) out.push("a displacement (1–4)");
    if (!state.location) out.push("a location (s t b r u)");
    return out;
  }
  const dirty = () => (saved ? !same(read(), saved) : read().fracture !== null);

  // --- rendering --------------------------------------------------------------------------------
  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
    // After a refused save only the two conflict buttons make sense.
    ["fx-save", "fx-save-next"].forEach((id) => { if ($(id)) $(id).disabled = state === "conflict" || state === "saving"; });
  }
  function showMessage(text, kind) {
    messageEl.hidden = !text;
    messageEl.textContent = text || "";
    messageEl.dataset.kind = kind || "";
  }
  function render() {
    const state = read();
    form.classList.toggle("no-fracture", state.fracture === false);
    form.classList.toggle("undecided", state.fracture === null);
    if (state.fracture === null) {
      sentenceEl.textContent = "Choose fracture (f) or no fracture (n).";
      sentenceEl.classList.add("placeholder");
    } else {
      sentenceEl.textContent = S.fractureSentence(state);
      sentenceEl.classList.remove("placeholder");
    }
    const lacks = missing(state);
    hintEl.textContent = state.fracture && lacks.length ? `To save, choose ${lacks.join(" and ")}.` : "";
    if (conflict || busy) return;
    if (dirty()) setStatus("dirty", "Unsaved changes");
    else if (saved) setStatus("saved", `Saved · version ${version}`);
    else setStatus("new", data.canLabel ? "Not labelled yet" : "Not labelled by you");
  }
  function renderProgress(progress) {
    const box = $("fx-progress");
    if (!box || !progress) return;
    box.querySelectorAll('[data-field="mine"]').forEach((n) => { n.textContent = progress.mine; });
    box.querySelectorAll('[data-field="everyone"]').forEach((n) => { n.textContent = progress.everyone; });
    box.querySelectorAll('[data-field="total"]').forEach((n) => { n.textContent = progress.total; });
    const bar = box.querySelector(".bar");
    const pct = (n) => (progress.total ? (100 * n) / progress.total : 0);
    bar.setAttribute("aria-valuenow", progress.mine);
    bar.querySelector(".fill").style.width = `${pct(progress.mine)}%`;
    bar.querySelector(".fx-fill-all").style.width = `${pct(progress.everyone)}%`;
  }

  // --- saving -------------------------------------------------------------------------------------
  async function save() {
    if (!data.canLabel || busy) return false;
    const state = read();
    const lacks = missing(state);
    if (lacks.length) {
      showMessage(`Not saved: choose ${lacks.join(" and ")}.`, "error");
      return false;
    }
    if (!dirty() && saved) return true;
    busy = true;
    setStatus("saving", "Saving…");
    showMessage("");
    const result = await api.put(data.urls.save, { version, ...normalised(state) });
    busy = false;
    if (result.offline) {
      setStatus("error", "Not saved");
      showMessage("The server could not be reached; your label is still here, try again.", "error");
      return false;
    }
    if (result.ok) {
      version = result.data.version;
      saved = pick(result.data);
      write(saved);
      conflict = null;
      conflictEl.hidden = true;
      render();
      refreshProgress();
      return true;
    }
    if (result.conflict) {
      conflict = result.extra;
      setStatus("conflict", "Conflict: not saved");
      showMessage(result.message || "Someone saved this label since you opened it.", "conflict");
      conflictEl.hidden = false;
      return false;
    }
    setStatus("error", "Not saved");
    showMessage(result.message || `The server refused the label (${result.status}).`, "error");
    return false;
  }
  async function refreshProgress() {
    const result = await api.get(`${data.urls.queue}?after=${data.image}`);
    if (!result.ok) return; // the counts are a nicety; the label is saved
    renderProgress(result.data.progress);
    data.urls.nextUnlabelled = result.data.next_url || data.urls.queuePage;
    const link = $("fx-next-unlabelled");
    if (link) link.href = data.urls.nextUnlabelled;
  }
  function go(url) {
    if (url) { leaving = true; window.location.assign(url); }
  }
  async function saveAndNext() {
    if (conflict) return;
    if (await save()) go(data.urls.nextUnlabelled);
  }
  async function navigate(url) {
    if (!url) return;
    if (data.canLabel && dirty() && !conflict) {
      if (missing(read()).length) {
        showMessage("This label is unfinished: finish it, or press Esc to discard it, before moving on.", "error");
        return;
      }
      if (!(await save())) return;
    }
    if (conflict) return;
    go(url);
  }
  function discard() {
    if (conflict) { // after a refused save, discarding means taking the label the server holds
      version = conflict.version;
      saved = conflict.current ? pick(conflict.current) : null;
    }
    write(saved);
    conflict = null;
    conflictEl.hidden = true;
    showMessage("");
    render();
  }

  // --- edits --------------------------------------------------------------------------------------
  function edit(change) {
    if (!data.canLabel) return;
    change();
    if (!conflict) showMessage(""); // an earlier "not saved: incomplete" no longer applies
    render();
  }
  function markFracture() {
    if (radio("fracture") !== "yes") setRadio("fracture", "yes");
  }
  function setNoFracture() {
    write({ fracture: false });
  }
  form.addEventListener("change", (event) => {
    const name = event.target.name;
    if (name === "fracture" && event.target.value === "no") setNoFracture();
    else if (name && name !== "fracture") markFracture();
    if (!conflict) showMessage("");
    render();
  });
  $("fx-save") && $("fx-save").addEventListener("click", () => save());
  $("fx-save-next") && $("fx-save-next").addEventListener("click", () => saveAndNext());
  $("fx-load-current").addEventListener("click", () => discard());
  $("fx-overwrite").addEventListener("click", () => {
    if (!conflict) return;
    version = conflict.version; // a deliberate choice after seeing the message, not a silent overwrite
    saved = conflict.current ? pick(conflict.current) : null;
    conflict = null;
    conflictEl.hidden = true;
    save();
  });

  // --- viewer: deep zoom (deepzoom.js), window / level ---------------------------------------------
  const zoomEl = $("fx-zoom"), contrast = $("fx-contrast"), brightness = $("fx-brightness");
  const viewer = window.DeepMinerZoom.fromElement($("fx-stage"), { toolbar: false });
  const stored = JSON.parse(sessionStorage.getItem("fx-window") || "null");
  if (stored) viewer.setWindow(stored.level, stored.width, stored.invert);
  function showView() { // the sliders and the zoom readout follow the viewer, whatever moved it
    contrast.value = viewer.window.width;
    brightness.value = viewer.window.level;
    zoomEl.textContent = `${Math.round(viewer.imageZoom() * 100)}%`;
    sessionStorage.setItem("fx-window", JSON.stringify(viewer.window));
  }
  viewer.osd.addHandler("animation", showView);
  viewer.osd.addHandler("open", showView);
  new MutationObserver(showView).observe($("fx-stage"), { attributes: true, attributeFilter: ["data-window"] });
  function zoom(factor) { viewer.zoomBy(factor); }
  function resetView() { viewer.reset(); }
  function nudgeContrast(step) { viewer.nudge(0, -step * 1.5); } // ] = more contrast = a narrower window
  document.querySelectorAll("[data-zoom]").forEach((button) => button.addEventListener("click", () => {
    const what = button.dataset.zoom;
    if (what === "in") zoom(1.5); else if (what === "out") zoom(1 / 1.5);
    else if (what === "invert") viewer.toggleInvert(); else resetView();
  }));
  contrast.addEventListener("input", () => viewer.setWindow(viewer.window.level, parseFloat(contrast.value)));
  brightness.addEventListener("input", () => viewer.setWindow(parseFloat(brightness.value), viewer.window.width));

  // --- help ---------------------------------------------------------------------------------------
  function toggleHelp(show) {
    helpEl.hidden = show === undefined ? !helpEl.hidden : !show;
  }
  $("fx-help-button").addEventListener("click", () => toggleHelp());
  $("fx-help-close").addEventListener("click", () => toggleHelp(false));
  helpEl.addEventListener("click", (event) => { if (event.target === helpEl) toggleHelp(false); });

  // --- keyboard -----------------------------------------------------------------------------------
  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.metaKey) return;
    const target = event.target;
    if (target instanceof HTMLInputElement && target.type === "range" && event.key.startsWith("Arrow")) return;
    if (event.ctrlKey) {
      if (event.key === "s") { event.preventDefault(); save(); }
      return;
    }
    const key = event.key;
    if (key === "?") { event.preventDefault(); toggleHelp(); return; }
    if (key === "Escape") {
      if (!helpEl.hidden) toggleHelp(false); else discard();
      return;
    }
    if (!helpEl.hidden) return;
    const onControl = target instanceof HTMLButtonElement || target instanceof HTMLAnchorElement;
    if (key === "Enter") {
      if (onControl) return; // Enter on a focused button or link does what that control says
      event.preventDefault();
      saveAndNext();
      return;
    }
    if (key === "ArrowLeft" || key === "ArrowRight") {
      event.preventDefault(); // radios would otherwise change their own value
      navigate(key === "ArrowLeft" ? data.urls.previous : data.urls.next);
      return;
    }
    if (key === "[" || key === "]") { nudgeContrast(key === "]" ? 0.1 : -0.1); return; }
    if (window.DeepMinerZoom.handleKey(viewer, event)) return;
    if (!data.canLabel || busy) return;
    const lower = key.length === 1 ? key.toLowerCase() : key;
    if (lower === "n") {
      event.preventDefault();
      edit(setNoFracture);
      saveAndNext();
    } else if (lower === "f") {
      edit(markFracture);
    } else if (DISPLACEMENT_KEYS[lower]) {
      edit(() => { markFracture(); setRadio("displacement", DISPLACEMENT_KEYS[lower]); });
    } else if (LOCATION_KEYS[lower]) {
      edit(() => { markFracture(); setRadio("location", LOCATION_KEYS[lower]); });
    } else if (TOGGLE_KEYS[lower]) {
      event.preventDefault(); // a focused checkbox must not also toggle itself
      edit(() => { markFracture(); const box = form.elements[TOGGLE_KEYS[lower]]; box.checked = !box.checked; });
    }
  });

  window.addEventListener("beforeunload", (event) => {
    if (!leaving && data.canLabel && dirty()) { event.preventDefault(); event.returnValue = ""; }
  });

  // --- start --------------------------------------------------------------------------------------
  write(saved);
  showView();
  render();
  renderProgress(data.progress);
  // The next images' descriptors are prefetched (<link rel=prefetch>): asking makes the server build their
  // pyramids while this one is read.
})();

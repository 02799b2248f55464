// Unit survey page: patch overlays, full-image context, the survey form with autosave, keyboard shortcuts.
// Saves go to the JSON API (through api.js) with the version last loaded; a 409 means someone (or another
// tab) saved first. The answers and the admins' consensus save the same way: a refused save shows the
// API's message and keeps what was typed in the form.
(function () {
  "use strict";
  const api = window.DeepMinerApi;
  const boot = JSON.parse(document.getElementById("survey-boot").textContent);
  const grid = document.getElementById("patch-grid");
  const tiles = Array.from(grid.querySelectorAll(".tile"));
  const form = document.getElementById("survey-form");
  const stateEl = document.getElementById("save-state");
  const phenomenaEl = document.getElementById("phenomena");
  const template = document.getElementById("phenomenon-template");
  const lexicon = boot.lexicon;
  const byCode = Object.fromEntries(lexicon.map((c) => [c.code, c]));
  const COLUMNS = 8; // mask sprites are tiled row-major, 8 tiles per row (mining.pipeline.mask_sprite)
  let version = boot.mine ? boot.mine.version : 0;
  let saveTimer = null;
  let inFlight = null;
  let dirty = false;
  let conflicted = false;

  // ------------------------------------------------------------------ save state
  function setState(state, text) {
    stateEl.dataset.state = state;
    stateEl.textContent = text;
  }

  // ------------------------------------------------------------------ overlays
  const sprites = {};
  function loadSprite(kind) {
    const url = grid.dataset[kind + "Sprite"];
    if (!url) return Promise.resolve(null);
    if (!sprites[kind]) {
      sprites[kind] = new Promise((resolve) => {
        const img = new Image();
        img.onload = () => {
          const canvas = document.createElement("canvas");
          canvas.width = img.naturalWidth;
          canvas.height = img.naturalHeight;
          canvas.getContext("2d").drawImage(img, 0, 0);
          resolve(canvas);
        };
        img.onerror = () => resolve(null);
        img.src = url;
      });
    }
    return sprites[kind];
  }

  function jet(v) { // v in 0..1 -> [r, g, b], the usual blue-cyan-yellow-red heat scale
    const r = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 3)));
    const g = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 2)));
    const b = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 1)));
    return [r * 255, g * 255, b * 255];
  }

  function drawOverlay(tile, sprite, mode) {
    const canvas = tile.querySelector("canvas");
    const size = 128;
    canvas.width = size;
    canvas.height = size;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, size, size);
    if (!sprite || mode === "raw") return;
    const side = sprite.width / COLUMNS;
    const index = Number(tile.dataset.rank) - 1;
    const sx = (index % COLUMNS) * side;
    const sy = Math.floor(index / COLUMNS) * side;
    if (sy + side > sprite.height) return;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(sprite, sx, sy, side, side, 0, 0, size, size);
    const pixels = ctx.getImageData(0, 0, size, size);
    const data = pixels.data;
    for (let i = 0; i < data.length; i += 4) {
      const v = data[i] / 255;
      if (mode === "mask") { // dim what the unit does not respond to
        data[i] = data[i + 1] = data[i + 2] = 0;
        data[i + 3] = Math.round((1 - v) * 170);
      } else {
        const [r, g, b] = jet(v);
        data[i] = r; data[i + 1] = g; data[i + 2] = b;
        data[i + 3] = Math.round(Math.min(1, v * 1.4) * 150);
      }
    }
    ctx.putImageData(pixels, 0, 0);
  }

  async function setView(mode) {
    grid.dataset.view = mode;
    const input = document.querySelector(`input[name=view][value=${mode}]`);
    if (input) input.checked = true;
    const sprite = mode === "raw" ? null : await loadSprite(mode);
    tiles.forEach((tile) => drawOverlay(tile, sprite, mode));
  }

  function cycleView() {
    const modes = Array.from(document.querySelectorAll("input[name=view]:not([disabled])")).map((i) => i.value);
    const current = modes.indexOf(grid.dataset.view || "raw");
    setView(modes[(current + 1) % modes.length]);
  }

  document.querySelectorAll("input[name=view]").forEach((input) =>
    input.addEventListener("change", () => setView(input.value)));

  // ------------------------------------------------------------------ full-image context
  // The hovered patch's image in the deep zoom viewer (deepzoom.js): its tiles at the size the panel
  // needs, the red patch box, the unit's response box and the finding outlines placed in image pixels.
  const contextOverlay = document.getElementById("context-overlay");
  const contextBox = document.getElementById("context-box");
  const contextResponse = document.getElementById("context-response");
  const contextCaption = document.getElementById("context-caption");
  const zoom = window.DeepMinerZoom.fromElement(document.getElementById("context-stack"));
  const numbers = (text) => text.split(",").map(Number);
  let pending = null;

  function showContext(tile) {
    tiles.forEach((t) => t.classList.toggle("current", t === tile));
    const [width, height] = numbers(tile.dataset.size);
    zoom.open(tile.dataset.dzi, width, height);
    if (tile.dataset.overlay) {
      if (contextOverlay.getAttribute("src") !== tile.dataset.overlay) contextOverlay.src = tile.dataset.overlay;
      contextOverlay.hidden = false;
    } else {
      contextOverlay.hidden = true;
    }
    zoom.setBox(contextResponse, numbers(tile.dataset.box));
    zoom.setBox(contextBox, numbers(tile.dataset.patch));
    contextCaption.textContent = tile.dataset.caption;
    const explained = document.getElementById("context-link");
    if (explained && tile.dataset.imagePage) { explained.href = tile.dataset.imagePage; explained.hidden = false; }
  }
  // Sweeping the pointer across the grid opens only the patch it rests on.
  function showSoon(tile) {
    clearTimeout(pending);
    pending = setTimeout(() => showContext(tile), 120);
  }

  tiles.forEach((tile) => {
    tile.addEventListener("mouseenter", () => showSoon(tile));
    tile.addEventListener("focus", () => { clearTimeout(pending); showContext(tile); });
  });
  if (tiles.length) showContext(tiles[0]);

  function moveTile(step) {
    const current = tiles.indexOf(document.activeElement);
    const next = tiles[Math.max(0, Math.min(tiles.length - 1, current < 0 ? 0 : current + step))];
    if (next) next.focus();
  }

  // ------------------------------------------------------------------ concept picker
  function conceptLabel(code) {
    const c = byCode[code];
    return c ? `${c.category_label}: ${c.term}` : "";
  }

  function setupPicker(item) {
    const input = item.querySelector(".concept-input");
    const list = item.querySelector(".concept-options");
    let matches = [];
    let active = 0;

    function render() {
      list.innerHTML = "";
      matches.slice(0, 40).forEach((c, i) => {
        const li = document.createElement("li");
        li.setAttribute("role", "option");
        li.dataset.code = c.code;
        li.className = i === active ? "active" : "";
        li.innerHTML = `<span class="term"></span> <span class="muted"></span>`;
        li.querySelector(".term").textContent = c.term;
        li.querySelector(".muted").textContent = c.category_label;
        li.addEventListener("mousedown", (event) => { event.preventDefault(); choose(c.code); });
        list.appendChild(li);
      });
      list.hidden = matches.length === 0;
      input.setAttribute("aria-expanded", String(!list.hidden));
    }

    function search() {
      const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      matches = lexicon.filter((c) => {
        const text = `${c.term} ${c.category_label} ${c.code}`.toLowerCase();
        return words.every((w) => text.includes(w));
      });
      active = 0;
      render();
    }

    function choose(code) {
      item.dataset.concept = code;
      input.value = conceptLabel(code);
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
      const association = item.querySelector(".association");
      if (!association.value && byCode[code]) association.value = associationOf(byCode[code]);
      changed();
    }

    input.addEventListener("input", () => {
      if (!input.value) { item.dataset.concept = ""; changed(); }
      search();
    });
    input.addEventListener("focus", search);
    input.addEventListener("blur", () => {
      list.hidden = true;
      input.value = conceptLabel(item.dataset.concept || "");
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        if (list.hidden) search();
        active = Math.max(0, Math.min(matches.length - 1, active + (event.key === "ArrowDown" ? 1 : -1)));
        render();
        const li = list.children[active];
        if (li) li.scrollIntoView({ block: "nearest" });
      } else if (event.key === "Enter") {
        event.preventDefault();
        if (matches[active]) choose(matches[active].code);
      }
    });
  }

  function associationOf(concept) {
    return { suspicious: "malignant", benign: "benign", normal: "normal" }[concept.association] || "uncertain";
  }

  // ------------------------------------------------------------------ the form
  function addPhenomenon(values, focus) {
    const item = template.content.firstElementChild.cloneNode(true);
    item.querySelector(".description").value = values.description || "";
    item.dataset.concept = values.concept || "";
    item.querySelector(".concept-input").value = conceptLabel(values.concept || "");
    item.querySelector(".association").value = values.association || "";
    item.querySelector(".remove").addEventListener("click", () => { item.remove(); changed(); });
    item.querySelectorAll("textarea, select").forEach((el) => el.addEventListener("input", changed));
    setupPicker(item);
    phenomenaEl.appendChild(item);
    if (focus) item.querySelector(".description").focus();
    return item;
  }

  function collect() {
    const checked = (name) => (form.querySelector(`input[name=${name}]:checked`) || {}).value || "";
    const confidence = checked("confidence");
    return {
      version,
      recognizable: checked("recognizable"),
      phenomena: Array.from(phenomenaEl.children).map((item) => ({
        description: item.querySelector(".description").value,
        concept: item.dataset.concept || "",
        association: item.querySelector(".association").value,
      })),
      confidence: confidence ? Number(confidence) : null,
      notes: form.querySelector("#notes").value,
    };
  }

  function fill(answers) {
    const set = (name, value) => {
      const input = form.querySelector(`input[name=${name}][value="${value}"]`);
      if (input) input.checked = true;
    };
    if (!answers) return;
    set("recognizable", answers.recognizable);
    if (answers.confidence) set("confidence", answers.confidence);
    form.querySelector("#notes").value = answers.notes || "";
    phenomenaEl.innerHTML = "";
    (answers.phenomena || []).forEach((p) => addPhenomenon(p, false));
  }

  function changed() {
    if (!boot.canAnnotate || conflicted) return;
    dirty = true;
    setState("dirty", "Unsaved changes…");
    clearTimeout(saveTimer);
    saveTimer = setTimeout(save, 700);
  }

  async function save() {
    clearTimeout(saveTimer);
    if (!dirty || conflicted) return inFlight;
    if (inFlight) { await inFlight; return save(); }
    dirty = false;
    setState("saving", "Saving…");
    inFlight = (async () => {
      try {
        const result = await api.put(boot.saveUrl, collect());
        if (result.ok) {
          version = result.data.version;
          if (!dirty) setState("saved", `Saved ✓ ${clock()}`);
        } else if (result.conflict) {
          conflicted = true;
          setState("conflict", result.message || "Someone else saved this annotation first.");
          showConflict("conflict-actions", stateEl.closest(".card"), form);
        } else if (result.offline) {
          dirty = true;
          setState("error", "Not saved: the server cannot be reached. Retrying…");
          saveTimer = setTimeout(save, 3000);
        } else {
          dirty = true;
          setState("error", `Not saved: ${result.message || `the server answered ${result.status}`}`);
        }
      } finally {
        inFlight = null;
      }
    })();
    return inFlight;
  }

  function clock() {
    return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  // After a refused save: say the edits are kept, and offer the version the server holds (a reload).
  function showConflict(id, container, before) {
    if (document.getElementById(id)) return;
    const box = document.createElement("div");
    box.id = id;
    box.className = "note conflict";
    box.innerHTML = '<span></span> <button type="button" class="small">Load the saved version</button>';
    box.querySelector("span").textContent = "Your edits are still in the form but were not saved.";
    box.querySelector("button").addEventListener("click", () => window.location.reload());
    container.insertBefore(box, before);
  }

  form.addEventListener("change", changed);
  form.querySelector("#notes").addEventListener("input", changed);
  document.getElementById("add-phenomenon").addEventListener("click", () => { addPhenomenon({}, true); changed(); });

  function useSuggestion() {
    if (!boot.suggested || !boot.canAnnotate) return;
    const existing = Array.from(phenomenaEl.children).find((i) => i.dataset.concept === boot.suggested);
    if (existing) { existing.querySelector(".description").focus(); return; }
    const concept = byCode[boot.suggested];
    addPhenomenon({ concept: boot.suggested, association: concept ? associationOf(concept) : "", description: "" }, false);
    const yes = form.querySelector("input[name=recognizable][value=yes]");
    if (!form.querySelector("input[name=recognizable]:checked")) yes.checked = true;
    changed();
  }
  const suggestButton = document.getElementById("use-suggestion");
  if (suggestButton) suggestButton.addEventListener("click", useSuggestion);

  // Leaving the page flushes a pending save first, so moving on never loses the last answer.
  async function go(url) {
    if (!url) return;
    await save();
    if (!conflicted) window.location.href = url;
  }
  window.addEventListener("beforeunload", (event) => {
    if (dirty || inFlight) { save(); event.preventDefault(); }
  });
  document.querySelectorAll(".unit-nav a[href]").forEach((link) => link.addEventListener("click", (event) => {
    event.preventDefault();
    go(link.href);
  }));

  // ------------------------------------------------------------------ consensus (admins)
  // Saved on submit, not automatically; refused the same way as the answers: a 409 keeps the form and
  // offers the saved version, a 400 or an unreachable server says why and the admin submits again.
  const consensusForm = document.getElementById("consensus-form");
  if (consensusForm) {
    const consensusState = document.getElementById("consensus-state");
    const consensusButton = consensusForm.querySelector("button[type=submit]");
    let consensusVersion = boot.consensus ? boot.consensus.version : 0;
    let consensusConflict = "";
    const setConsensusState = (state, text) => {
      consensusState.dataset.state = state;
      consensusState.textContent = text;
    };
    if (boot.consensus) {
      ["recognizable", "concept", "association", "description"].forEach((k) => {
        consensusForm.elements[k].value = boot.consensus[k] || "";
      });
    }
    consensusForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (consensusConflict) { setConsensusState("conflict", consensusConflict); return; }
      const data = Object.fromEntries(new FormData(consensusForm).entries());
      consensusButton.disabled = true;
      setConsensusState("saving", "Saving…");
      const result = await api.put(boot.consensusUrl, { ...data, version: consensusVersion });
      consensusButton.disabled = false;
      if (result.ok) {
        consensusVersion = result.data.version;
        setConsensusState("saved", `Consensus saved ✓ ${clock()}`);
      } else if (result.conflict) {
        consensusConflict = result.message || "Someone else set this consensus first.";
        setConsensusState("conflict", consensusConflict);
        showConflict("consensus-conflict-actions", consensusForm.parentNode, consensusForm.nextSibling);
      } else if (result.offline) {
        setConsensusState("error", "Not saved: the server cannot be reached. Submit again when it is back.");
      } else {
        setConsensusState("error", `Not saved: ${result.message || `the server answered ${result.status}`}`);
      }
    });
  }

  // ------------------------------------------------------------------ keyboard
  const help = document.getElementById("help");
  function toggleHelp(show) { help.hidden = show === undefined ? !help.hidden : !show; }
  document.getElementById("help-button").addEventListener("click", () => toggleHelp());
  help.addEventListener("click", () => toggleHelp(false));

  function typing(target) {
    return target.closest && target.closest("textarea, input[type=text], input[type=search], select");
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (window.DeepMinerZoom.handleKey(zoom, event)) return;
    const key = event.key;
    const pick = (name, value) => {
      const input = form.querySelector(`input[name=${name}][value="${value}"]`);
      if (input && boot.canAnnotate) { input.checked = true; input.focus({ preventScroll: true }); changed(); }
    };
    const actions = {
      y: () => pick("recognizable", "yes"), n: () => pick("recognizable", "no"), u: () => pick("recognizable", "unsure"),
      1: () => pick("confidence", "1"), 2: () => pick("confidence", "2"), 3: () => pick("confidence", "3"),
      4: () => pick("confidence", "4"), 5: () => pick("confidence", "5"),
      a: () => { if (boot.canAnnotate) { addPhenomenon({}, true); changed(); } },
      s: useSuggestion, v: cycleView,
      j: () => go(boot.neighbours.next), k: () => go(boot.neighbours.previous),
      x: () => go(boot.neighbours.next_unannotated || boot.listUrl),
      ArrowRight: () => moveTile(1), ArrowLeft: () => moveTile(-1),
      "?": () => toggleHelp(), Escape: () => toggleHelp(false),
    };
    if (actions[key]) {
      event.preventDefault();
      actions[key]();
    }
  });

  fill(boot.mine);
  if (boot.mine) setState("saved", "Saved ✓");
  setView("raw");
})();

// Image page: choose which map lies over the image (the class map or one unit's activation), toggle the
// map and the finding outlines, and set the map's opacity; keyboard first (1-8, c, m, o, [ and ]). The image
// itself is the deep zoom viewer (deepzoom.js), the maps and outlines its full-image overlays. Pointing at
// (or tabbing to) a word of the generated sentence paints that word's attention over the image instead.
(function () {
  "use strict";
  const viewer = document.getElementById("viewer");
  if (!viewer) return;
  const layer = document.getElementById("map-layer");
  const outlines = document.getElementById("outline-layer");
  const name = document.getElementById("overlay-name");
  const mapToggle = document.getElementById("toggle-map");
  const outlineToggle = document.getElementById("toggle-outlines");
  const opacity = document.getElementById("map-opacity");
  const cards = Array.from(document.querySelectorAll(".unit-card"));
  const zoom = window.DeepMinerZoom.fromElement(viewer);

  function show(src, label, card) {
    layer.src = src;
    name.textContent = label;
    cards.forEach((c) => c.classList.toggle("active", c === card));
    mapToggle.checked = true;
    layer.hidden = false;
  }
  function showClassMap() { show(viewer.dataset.classMap, viewer.dataset.className, null); }
  function setOpacity(value) {
    const v = Math.max(0, Math.min(100, value));
    opacity.value = String(v);
    layer.style.opacity = String(v / 100);
    const attention = document.getElementById("attention-layer");
    if (attention) attention.style.opacity = String(v / 100);
  }

  cards.forEach((card) => {
    const pick = () => (card.classList.contains("active") ? showClassMap() : show(card.dataset.map, card.dataset.name, card));
    card.addEventListener("click", (event) => { if (event.target.tagName !== "A") pick(); });
    card.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); pick(); } });
  });
  mapToggle.addEventListener("change", () => { layer.hidden = !mapToggle.checked; });
  if (outlineToggle && outlines) outlineToggle.addEventListener("change", () => { outlines.hidden = !outlineToggle.checked; });
  opacity.addEventListener("input", () => setOpacity(Number(opacity.value)));
  setOpacity(Number(opacity.value));

  // Word attention: the page carries each token's heat as RGBA over the classifier's region grid; the
  // canvas is that grid, stretched (and smoothed) over the whole image by the viewer.
  const attentionLayer = document.getElementById("attention-layer");
  const attentionData = document.getElementById("word-attention");
  if (attentionLayer && attentionData) {
    const attention = JSON.parse(attentionData.textContent);
    const [rows, cols] = attention.grid;
    attentionLayer.width = cols;
    attentionLayer.height = rows;
    const paint = attentionLayer.getContext("2d");
    const words = Array.from(document.querySelectorAll("#generated-sentence .word"));
    let shownName = null;
    const showWord = (word) => {
      const heat = attention.heats[Number(word.dataset.token)];
      paint.putImageData(new ImageData(new Uint8ClampedArray(heat), cols, rows), 0, 0);
      if (shownName === null) shownName = name.textContent;
      name.textContent = `Attention of the generated word “${word.textContent.replace(/[.,]$/, "")}”`;
      words.forEach((w) => w.classList.toggle("active", w === word));
      attentionLayer.hidden = false;
      layer.hidden = true;
    };
    const hideWord = () => {
      words.forEach((w) => w.classList.remove("active"));
      attentionLayer.hidden = true;
      layer.hidden = !mapToggle.checked;
      if (shownName !== null) name.textContent = shownName;
      shownName = null;
    };
    words.forEach((word) => {
      word.addEventListener("mouseenter", () => showWord(word));
      word.addEventListener("focus", () => showWord(word));
      word.addEventListener("mouseleave", hideWord);
      word.addEventListener("blur", hideWord);
    });
  }

  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    if (window.DeepMinerZoom.handleKey(zoom, event)) return;
    const n = Number(event.key);
    if (n >= 1 && n <= cards.length) { show(cards[n - 1].dataset.map, cards[n - 1].dataset.name, cards[n - 1]); return; }
    if (event.key === "c") showClassMap();
    else if (event.key === "m") { mapToggle.checked = !mapToggle.checked; layer.hidden = !mapToggle.checked; }
    else if (event.key === "o" && outlineToggle && outlines) { outlineToggle.checked = !outlineToggle.checked; outlines.hidden = !outlineToggle.checked; }
    else if (event.key === "[") setOpacity(Number(opacity.value) - 10);
    else if (event.key === "]") setOpacity(Number(opacity.value) + 10);
  });
})();

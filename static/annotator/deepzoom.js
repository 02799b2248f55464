// Deep zoom viewer shared by the image page, the fracture page and the survey's context image: the image's
// tile pyramid through the vendored OpenSeadragon (static/vendor/openseadragon), with window / level
// (Shift + drag, or keys), invert and reset, and overlays placed in *original image pixels* (patch boxes,
// finding outlines, unit and class maps) that OpenSeadragon keeps aligned at every zoom.
//
// Window / level act on the tiles' 8-bit windowed values: an SVG feComponentTransfer (linear, sRGB) on
// OpenSeadragon's canvas only, so the overlays keep their own colours. Keys (DeepMinerZoom.handleKey):
// + - zoom, 0 reset, < > (or , .) window narrower / wider, { } level down / up, \ invert.
(function () {
  "use strict";
  const OSD = window.OpenSeadragon;
  const SVG = "http://www.w3.org/2000/svg";
  let count = 0;

  function svgFilter(id) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "dz-filters");
    svg.setAttribute("aria-hidden", "true");
    const filter = document.createElementNS(SVG, "filter");
    filter.setAttribute("id", id);
    filter.setAttribute("color-interpolation-filters", "sRGB");
    const transfer = document.createElementNS(SVG, "feComponentTransfer");
    const funcs = ["feFuncR", "feFuncG", "feFuncB"].map((name) => {
      const f = document.createElementNS(SVG, name);
      f.setAttribute("type", "linear");
      transfer.appendChild(f);
      return f;
    });
    filter.appendChild(transfer);
    svg.appendChild(filter);
    document.body.appendChild(svg);
    return funcs;
  }

  function button(text, title, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "small";
    b.textContent = text;
    b.title = title;
    b.addEventListener("click", onClick);
    return b;
  }

  class Zoom {
    // element: an empty-ish container (its children with class "dz-overlay" become full-image overlays);
    // options: {dzi, width, height, toolbar (default true), prefixUrl}
    constructor(element, options) {
      this.element = element;
      this.width = options.width;
      this.height = options.height;
      this.window = { level: 0.5, width: 1, invert: false };
      this.fullImage = Array.from(element.querySelectorAll(":scope > .dz-overlay"));
      this.boxes = new Map(); // element -> [x0, y0, x1, y1] in image pixels
      this.stage = document.createElement("div");
      this.stage.className = "dz-stage";
      element.prepend(this.stage);
      this.filterId = `dz-wl-${++count}`;
      this.funcs = svgFilter(this.filterId);
      this.osd = OSD({
        element: this.stage,
        tileSources: options.dzi || null,
        prefixUrl: options.prefixUrl || "",
        drawer: "canvas",
        showNavigationControl: false,
        animationTime: 0.25,
        blendTime: 0,
        visibilityRatio: 0.5,
        minZoomImageRatio: 0.8,
        maxZoomPixelRatio: 4,
        gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true, scrollToZoom: true },
        preserveViewport: false,
      });
      this.osd.addHandler("canvas-key", (event) => { event.preventDefaultAction = true; }); // the page owns keys
      this.osd.addHandler("canvas-drag", (event) => this._drag(event));
      this.osd.addHandler("open", () => this._placeAll());
      this.osd.addHandler("animation", () => this._readout());
      this.osd.addHandler("open", () => this._readout());
      if (options.toolbar !== false) this._toolbar();
      this.applyWindow();
      Zoom.all.push(this);
    }

    // ---------------------------------------------------------------- image and overlays
    open(dzi, width, height) {
      if (this.dzi === dzi) return;
      this.dzi = dzi;
      this.width = width;
      this.height = height;
      this.osd.open(dzi);
    }
    _rect(x0, y0, x1, y1) { // image pixels -> viewport units (the image is 1 wide)
      return new OSD.Rect(x0 / this.width, y0 / this.width, (x1 - x0) / this.width, (y1 - y0) / this.width);
    }
    _place(element, rect) {
      if (this.osd.getOverlayById(element)) this.osd.updateOverlay(element, rect);
      else this.osd.addOverlay({ element, location: rect });
    }
    _placeAll() {
      if (!this.osd.world.getItemCount()) return;
      this.fullImage.forEach((el) => this._place(el, this._rect(0, 0, this.width, this.height)));
      this.boxes.forEach((box, el) => this._place(el, this._rect(...box)));
    }
    // Show ``element`` over the image pixels [x0, x1) x [y0, y1), from now on and after every open.
    setBox(element, box) {
      this.boxes.set(element, box);
      element.hidden = false;
      if (this.osd.world.getItemCount()) this._place(element, this._rect(...box));
    }
    // Page rectangle of image pixels [x0, x1) x [y0, y1) as the viewer shows them now (for tests and pages).
    pageRect(x0, y0, x1, y1) {
      const vp = this.osd.viewport;
      const a = vp.imageToViewerElementCoordinates(new OSD.Point(x0, y0));
      const b = vp.imageToViewerElementCoordinates(new OSD.Point(x1, y1));
      const origin = this.stage.getBoundingClientRect();
      return { x: origin.left + a.x, y: origin.top + a.y, width: b.x - a.x, height: b.y - a.y };
    }
    loaded() {
      const item = this.osd.world.getItemAt(0);
      return !!item && item.getFullyLoaded();
    }

    // ---------------------------------------------------------------- zoom
    zoomBy(factor) {
      this.osd.viewport.zoomBy(factor);
      this.osd.viewport.applyConstraints();
    }
    imageZoom() { // screen pixels per image pixel
      return this.osd.world.getItemCount() ? this.osd.viewport.viewportToImageZoom(this.osd.viewport.getZoom(true)) : 0;
    }
    reset() {
      this.osd.viewport.goHome();
      this.setWindow(0.5, 1, false);
    }

    // ---------------------------------------------------------------- window / level
    setWindow(level, width, invert) {
      this.window = {
        level: Math.min(1, Math.max(0, level)),
        width: Math.min(2, Math.max(0.02, width)),
        invert: invert === undefined ? this.window.invert : invert,
      };
      this.applyWindow();
    }
    nudge(dLevel, dWidth) { this.setWindow(this.window.level + dLevel, this.window.width * (1 + dWidth)); }
    toggleInvert() { this.setWindow(this.window.level, this.window.width, !this.window.invert); }
    applyWindow() {
      const { level, width, invert } = this.window;
      // out = (v - (level - width / 2)) / width, clipped by the filter; inverted: 1 - out.
      let slope = 1 / width;
      let intercept = 0.5 - level / width;
      if (invert) { slope = -slope; intercept = 1 - intercept; }
      this.funcs.forEach((f) => { f.setAttribute("slope", slope.toFixed(5)); f.setAttribute("intercept", intercept.toFixed(5)); });
      const identity = level === 0.5 && width === 1 && !invert;
      const canvas = this.osd.drawer && this.osd.drawer.canvas;
      if (canvas) canvas.style.filter = identity ? "" : `url(#${this.filterId})`;
      this.element.dataset.window = `${level.toFixed(3)},${width.toFixed(3)},${invert ? 1 : 0}`;
      this._readout();
    }
    _drag(event) {
      const original = event.originalEvent || {};
      if (!original.shiftKey) return; // a plain drag pans
      event.preventDefaultAction = true;
      const size = this.stage.getBoundingClientRect();
      // Right = wider window (less contrast), down = lower level (brighter), as most PACS viewers do.
      this.setWindow(this.window.level - event.delta.y / size.height, this.window.width * (1 + event.delta.x / size.width));
    }

    // ---------------------------------------------------------------- toolbar
    _toolbar() {
      const bar = document.createElement("div");
      bar.className = "dz-tools";
      bar.setAttribute("role", "toolbar");
      bar.setAttribute("aria-label", "viewer");
      this.zoomOut = button("−", "zoom out (-)", () => this.zoomBy(1 / 1.5));
      this.zoomText = document.createElement("span");
      this.zoomText.className = "dz-zoom";
      this.zoomIn = button("+", "zoom in (+)", () => this.zoomBy(1.5));
      this.wlText = document.createElement("span");
      this.wlText.className = "dz-wl";
      this.wlText.title = "window / level: Shift + drag, or < > and { }";
      const invert = button("invert", "invert (\\)", () => this.toggleInvert());
      const reset = button("reset", "reset zoom and window (0)", () => this.reset());
      bar.append(this.zoomOut, this.zoomText, this.zoomIn, this.wlText, invert, reset);
      this.element.appendChild(bar);
    }
    _readout() {
      if (this.zoomText) this.zoomText.textContent = `${Math.round(this.imageZoom() * 100)}%`;
      if (this.wlText) {
        const { level, width, invert } = this.window;
        this.wlText.textContent = `W ${Math.round(width * 255)} L ${Math.round(level * 255)}${invert ? " · inverted" : ""}`;
      }
    }
  }
  Zoom.all = [];

  // The viewer keys; true when ``event`` was one (the page then does nothing else with it).
  function handleKey(zoom, event) {
    if (!zoom || event.ctrlKey || event.metaKey || event.altKey) return false;
    const actions = {
      "+": () => zoom.zoomBy(1.5), "=": () => zoom.zoomBy(1.5), "-": () => zoom.zoomBy(1 / 1.5), "_": () => zoom.zoomBy(1 / 1.5),
      "0": () => zoom.reset(), "<": () => zoom.nudge(0, -0.15), ",": () => zoom.nudge(0, -0.15),
      ">": () => zoom.nudge(0, 0.15), ".": () => zoom.nudge(0, 0.15), "{": () => zoom.nudge(-0.04, 0),
      "}": () => zoom.nudge(0.04, 0), "\\": () => zoom.toggleInvert(), "|": () => zoom.toggleInvert(),
    };
    const action = actions[event.key];
    if (!action) return false;
    event.preventDefault();
    action();
    return true;
  }

  // A viewer on ``element`` from its data attributes (data-dzi, data-width, data-height, data-prefix).
  function fromElement(element, options) {
    return new Zoom(element, {
      dzi: element.dataset.dzi, width: Number(element.dataset.width), height: Number(element.dataset.height),
      prefixUrl: element.dataset.prefix, ...(options || {}),
    });
  }

  window.DeepMinerZoom = { Zoom, handleKey, fromElement, all: Zoom.all };
})();

// Dataset page: show or hide the finding outlines drawn over the thumbnails (key: o).
(function () {
  "use strict";
  const box = document.getElementById("toggle-outlines");
  const grid = document.getElementById("thumbs");
  if (!box || !grid) return;
  const apply = () => grid.classList.toggle("no-outlines", !box.checked);
  box.addEventListener("change", apply);
  document.addEventListener("keydown", (e) => {
    if (e.key === "o" && !(e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement)) {
      box.checked = !box.checked; apply();
    }
  });
  apply();
})();

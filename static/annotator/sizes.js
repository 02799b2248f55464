// Sizes and shades computed from data: templates write data-width (a percentage) and data-shade (0-1), and this
// sets them through the CSSOM, which the Content-Security-Policy allows; a style="" attribute it would block.
(function () {
  "use strict";
  document.querySelectorAll("[data-width]").forEach((el) => { el.style.width = `${Number(el.dataset.width) || 0}%`; });
  document.querySelectorAll("[data-shade]").forEach((el) => {
    el.style.backgroundColor = `rgba(47, 95, 208, ${Number(el.dataset.shade) || 0})`;
  });
})();

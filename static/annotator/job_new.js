// New job page: show only the fields that matter for the chosen kind of job.
(function () {
  "use strict";
  const fieldsFor = { extract_patches: [], train: ["input", "architecture", "epochs", "patch_size", "validation_fraction", "weights_file"], mine: ["model", "shards"], explain: ["model", "split", "method"], caption: ["model", "epochs", "source"] };
  const kind = document.getElementById("id_kind");
  if (!kind) return;
  const optional = ["input", "architecture", "epochs", "patch_size", "validation_fraction", "weights_file", "model", "shards", "split", "method", "source"];
  function apply() {
    const show = fieldsFor[kind.value] || [];
    optional.forEach((name) => {
      const box = document.querySelector('[data-for="' + name + '"]');
      if (box) box.hidden = !show.includes(name);
    });
    document.querySelectorAll("[data-show-for]").forEach((el) => { el.hidden = el.dataset.showFor !== kind.value; });
  }
  kind.addEventListener("change", apply);
  apply();
})();

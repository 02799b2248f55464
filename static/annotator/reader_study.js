/*
 * The reader-study rating page, keyboard first: digits score the item (0 is 10) and save at once, then
 * the next item comes; a pair of sentences takes a score for each (Tab switches, the first digit moves on
 * to the second sentence); arrows or n / p move; u goes to the first item not rated yet. The page opens
 * at that item, so a reload resumes. Everything it knows comes from the #rs-data blob, and saves go
 * through DeepMinerApi (api.js).
 */
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("rs-data").textContent);
  const items = data.items;
  const $ = (id) => document.getElementById(id);
  let index = Math.min(data.resume, Math.max(items.length - 1, 0));
  let slot = 0; // which sentence of a pair the digits score
  let pending = [null, null]; // a pair's scores typed but not saved yet
  let saving = false;

  function rated() {
    return items.filter((item) => item.score !== null).length;
  }

  function showProgress() {
    const done = rated();
    $("rs-bar").value = done;
    $("rs-count").textContent = `${done} / ${items.length} rated`;
    $("rs-done").hidden = done < items.length;
  }

  function scoreRow(item, which) {
    const row = document.createElement("div");
    row.className = "rs-row";
    row.dataset.slot = String(which);
    const label = document.createElement("span");
    label.textContent = item.scale.scores === 2 ? `Sentence ${which === 0 ? "A" : "B"}:` : "Score:";
    row.appendChild(label);
    const current = pending[which] !== null ? pending[which] : which === 0 ? item.score : item.second_score;
    for (let value = 1; value <= item.scale.top; value += 1) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = String(value);
      button.dataset.score = String(value);
      if (value === current) button.className = "rs-chosen";
      button.addEventListener("click", () => {
        slot = which;
        choose(value);
      });
      row.appendChild(button);
    }
    return row;
  }

  function render() {
    if (!items.length) return;
    const item = items[index];
    $("rs-position").textContent = `Item ${index + 1} of ${items.length}${item.score !== null ? " · rated" : ""}`;
    $("rs-question").textContent = item.scale.question;
    $("rs-picture").src = item.picture;
    const sentences = $("rs-sentences");
    sentences.replaceChildren();
    item.sentences.forEach((text, which) => {
      const block = document.createElement("p");
      block.className = "rs-sentence" + (item.scale.scores === 2 && which === slot ? " rs-active" : "");
      block.textContent = item.scale.scores === 2 ? `${which === 0 ? "A" : "B"}: ${text}` : text;
      sentences.appendChild(block);
    });
    const scores = $("rs-scores");
    scores.replaceChildren(...Array.from({ length: item.scale.scores }, (_, which) => scoreRow(item, which)));
    showProgress();
  }

  function go(to) {
    if (to < 0 || to >= items.length) return;
    index = to;
    slot = 0;
    pending = [null, null];
    $("rs-message").textContent = "";
    render();
  }

  async function save(item, score, second) {
    saving = true;
    $("rs-message").textContent = "Saving…";
    const result = await DeepMinerApi.put(data.urls.rating.replace("KEY", item.key), {
      score,
      second_score: second,
    });
    saving = false;
    if (!result.ok) {
      $("rs-message").textContent = result.offline
        ? "Not saved: the server cannot be reached. Try again."
        : `Not saved: ${result.message || "the server refused it"}`;
      return false;
    }
    item.score = result.data.score;
    item.second_score = result.data.second_score;
    return true;
  }

  async function choose(value) {
    const item = items[index];
    if (saving || !item) return;
    if (value > item.scale.top) {
      $("rs-message").textContent = `Scores go from 1 to ${item.scale.top} here.`;
      return;
    }
    if (item.scale.scores === 2) {
      pending[slot] = value;
      const other = pending[1 - slot] !== null ? pending[1 - slot] : slot === 0 ? item.second_score : item.score;
      if (other === null || other === undefined) {
        slot = 1 - slot;
        render();
        return;
      }
      const [first, second] = slot === 0 ? [value, other] : [other, value];
      if (await save(item, first, second)) advance();
      else render();
      return;
    }
    if (await save(item, value, null)) advance();
  }

  function advance() {
    if (index + 1 < items.length) {
      go(index + 1);
      $("rs-message").textContent = "Saved.";
    } else {
      pending = [null, null];
      render();
      $("rs-message").textContent = "Saved. That was the last item.";
    }
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (/^[0-9]$/.test(key)) {
      event.preventDefault();
      choose(key === "0" ? 10 : Number(key));
    } else if (key === "ArrowRight" || key === "n") {
      event.preventDefault();
      go(index + 1);
    } else if (key === "ArrowLeft" || key === "p") {
      event.preventDefault();
      go(index - 1);
    } else if (key === "u") {
      const first = items.findIndex((item) => item.score === null);
      if (first >= 0) go(first);
    } else if (key === "Tab" && items[index] && items[index].scale.scores === 2) {
      event.preventDefault();
      slot = 1 - slot;
      render();
    }
  });

  render();
})();

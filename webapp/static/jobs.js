// Job design forms (issue 6): "another row" buttons clone the last row of a table body
// with its inputs emptied. The forms work without this script (two blank rows are served).
"use strict";

function addRow(event) {
  const name = event.currentTarget.dataset.addRow;
  const body = document.querySelector(`tbody[data-rows="${name}"]`);
  if (!body || !body.lastElementChild) {
    return;
  }
  const row = body.lastElementChild.cloneNode(true);
  for (const field of row.querySelectorAll("input, textarea")) {
    if (field.type === "number") {
      field.value = field.defaultValue || "";
    } else if (field.name === "q_source") {
      field.value = "manual";
    } else if (field.name === "q_reasons") {
      field.value = "[]";
    } else {
      field.value = "";
    }
  }
  for (const list of row.querySelectorAll("ul.reasons")) {
    list.remove();
  }
  body.appendChild(row);
  const first = row.querySelector("textarea, input:not([type=hidden])");
  if (first) {
    first.focus();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-add-row]")) {
    button.addEventListener("click", addRow);
  }
});

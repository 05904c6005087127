// Pipeline board (issue 6): a "select all" box per stage column. The board works
// without this script (tick each card); the boxes stay hidden until it runs.
"use strict";

function selectColumn(event) {
  const column = event.currentTarget.closest("section.board-column");
  for (const box of column.querySelectorAll("li.card input[name=application]")) {
    box.checked = event.currentTarget.checked;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const box of document.querySelectorAll("input.select-column")) {
    box.hidden = false;
    box.addEventListener("change", selectColumn);
  }
});

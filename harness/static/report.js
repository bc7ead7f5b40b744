// The matrix report (index.html): sortable tables, inlined into the page by harness/report.py.
// A click on a column header of a table.sortable sorts its rows by that column (again:
// the other way); each cell's sort key is its data-k attribute: numbers when every key of
// the column is one, text otherwise; empty keys (no value) always last.
(function () {
  "use strict";
  function keyOf(row, col) {
    var cell = row.cells[col];
    return cell ? cell.getAttribute("data-k") || "" : "";
  }
  function sortBy(table, col, th) {
    var body = table.tBodies[0];
    if (!body) return;
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = rows.every(function (r) {
      var k = keyOf(r, col);
      return k === "" || isFinite(Number(k));
    });
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    rows.sort(function (a, b) {
      var x = keyOf(a, col), y = keyOf(b, col);
      if (x === "" || y === "") return (x === "") - (y === "");
      if (numeric) return dir * (Number(x) - Number(y));
      return dir * x.localeCompare(y);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    if (!table.tHead) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.title = "sort by this column";
      th.addEventListener("click", function () { sortBy(table, col, th); });
    });
  });
})();

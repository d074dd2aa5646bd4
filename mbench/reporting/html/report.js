// The report's two interactions. Sorting the comparison table: a click on a header sorts the task
// rows by that column (the mean rows stay below); the order is kept in the address
// (#sort=<column>-<asc|desc>), so a sorted view can be shared or reloaded; missing values sort last
// either way. And the buttons that open or close every worst-queries block at once.
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("button.toggle-all"), function (button) {
    button.addEventListener("click", function () {
      var open = button.getAttribute("data-open") === "1";
      Array.prototype.forEach.call(document.querySelectorAll("details.run"), function (d) { d.open = open; });
    });
  });
  var table = document.getElementById("comparison");
  if (!table) { document.documentElement.setAttribute("data-ready", "1"); return; }
  var headers = Array.prototype.slice.call(table.querySelectorAll("thead th"));
  var body = table.querySelector("tbody.tasks");

  function key(row, column) {
    var cell = row.children[column];
    var value = cell.getAttribute("data-value");
    if (value === null) { return { text: cell.textContent.trim().toLowerCase() }; }
    return value === "" ? { missing: true } : { number: parseFloat(value) };
  }

  function compare(a, b, descending) {
    if (a.missing || b.missing) { return a.missing === b.missing ? 0 : (a.missing ? 1 : -1); }
    var order = a.number !== undefined ? a.number - b.number : (a.text < b.text ? -1 : a.text > b.text ? 1 : 0);
    return descending ? -order : order;
  }

  function sortBy(column, descending) {
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, position) { return { row: row, key: key(row, column), position: position }; });
    keyed.sort(function (a, b) { return compare(a.key, b.key, descending) || a.position - b.position; });
    keyed.forEach(function (entry) { body.appendChild(entry.row); });
    headers.forEach(function (th, index) {
      if (index === column) { th.setAttribute("aria-sort", descending ? "descending" : "ascending"); }
      else { th.removeAttribute("aria-sort"); }
    });
  }

  function fromAddress() {
    var match = /sort=(\d+)-(asc|desc)/.exec(window.location.hash);
    if (match && Number(match[1]) < headers.length) { sortBy(Number(match[1]), match[2] === "desc"); }
  }

  headers.forEach(function (th, index) {
    th.addEventListener("click", function () {
      var descending = th.getAttribute("aria-sort") !== "descending";
      sortBy(index, descending);
      history.replaceState(null, "", "#sort=" + index + "-" + (descending ? "desc" : "asc"));
    });
  });
  fromAddress();
  window.addEventListener("hashchange", fromAddress);
  document.documentElement.setAttribute("data-ready", "1");
})();

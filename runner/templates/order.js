// Orders every sortable grid of thumbnails by the chosen key (rank, score or a metric) and marks that value.
(function () {
  var choice = document.getElementById("order");
  if (!choice) { return; }
  function value(tile, key) {
    var text = tile.getAttribute("data-" + key);
    return text === null || text === "" ? NaN : parseFloat(text);
  }
  function order() {
    var parts = choice.value.split(":"), key = parts[0], descending = parts[1] === "desc";
    document.querySelectorAll(".grid.sortable").forEach(function (grid) {
      var tiles = Array.prototype.slice.call(grid.children);
      tiles.sort(function (a, b) {
        var x = value(a, key), y = value(b, key);
        if (isNaN(x) !== isNaN(y)) { return isNaN(x) ? 1 : -1; }  // items without the value go last
        if (x === y || (isNaN(x) && isNaN(y))) { return value(a, "rank") - value(b, "rank"); }
        return descending ? y - x : x - y;
      });
      tiles.forEach(function (tile) { grid.appendChild(tile); });
    });
    document.querySelectorAll(".tile [data-key]").forEach(function (cell) {
      cell.classList.toggle("on", cell.getAttribute("data-key") === key);
    });
  }
  choice.addEventListener("change", order);
  order();
})();

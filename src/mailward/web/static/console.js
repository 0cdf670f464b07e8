/* mailward console: "select all" for bulk actions and the dashboard charts.
 * Data comes from <script type="application/json"> blocks written by the
 * server; nothing is fetched from another site. */
(function () {
  "use strict";
  var all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name=ids]").forEach(function (box) {
        box.checked = all.checked;
      });
    });
  }
  function data(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }
  if (typeof Chart === "undefined") { return; }
  var colours = {deliver: "#2e7d32", tag: "#f9a825", quarantine: "#ef6c00", reject: "#c62828"};
  var flow = data("flow-data");
  if (flow) {
    new Chart(document.getElementById("flow-chart"), {
      type: "bar",
      data: {
        labels: flow.labels.map(function (l) { return l.slice(5) + "h"; }),
        datasets: Object.keys(flow.series).map(function (action) {
          return {label: action, data: flow.series[action], backgroundColor: colours[action]};
        })
      },
      options: {animation: false, responsive: true, maintainAspectRatio: false,
                scales: {x: {stacked: true}, y: {stacked: true, beginAtZero: true}}}
    });
  }
  var symbols = data("symbols-data");
  if (symbols && symbols.symbols.length) {
    new Chart(document.getElementById("symbols-chart"), {
      type: "bar",
      data: {labels: symbols.symbols.map(function (s) { return s.symbol; }),
             datasets: [{label: "messages", data: symbols.symbols.map(function (s) { return s.messages; }),
                         backgroundColor: "#5c6bc0"}]},
      options: {animation: false, indexAxis: "y", responsive: true, maintainAspectRatio: false,
                plugins: {legend: {display: false}}}
    });
  }
  document.querySelectorAll("canvas.panel-chart").forEach(function (canvas) {
    var spec = data(canvas.getAttribute("data-source"));
    if (!spec) { return; }
    new Chart(canvas, {type: spec.type || "bar",
                       data: {labels: spec.labels, datasets: spec.datasets},
                       options: {animation: false, responsive: true, maintainAspectRatio: false}});
  });
}());

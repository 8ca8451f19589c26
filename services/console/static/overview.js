// Draws the overview's charts from the JSON the page carries, and again after each refresh
// (htmx swaps the #overview block every 30 seconds).
const charts = {};

function hourLabel(iso) {
  return new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

function draw() {
  const source = document.getElementById("overview-data");
  if (!source || typeof Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  const labels = data.labels.map(hourLabel);
  for (const chart of Object.values(charts)) chart.destroy();
  charts.perHour = new Chart(document.getElementById("chart-per-hour"), {
    type: "bar",
    data: { labels, datasets: data.categories },
    options: { animation: false, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } },
  });
  charts.ack = new Chart(document.getElementById("chart-ack"), {
    type: "line",
    data: {
      labels,
      datasets: [
        { label: "p50", data: data.acknowledgement.p50, spanGaps: true },
        { label: "p95", data: data.acknowledgement.p95, spanGaps: true },
      ],
    },
    options: { animation: false, scales: { y: { beginAtZero: true } } },
  });
}

window.addEventListener("load", draw);
document.body.addEventListener("htmx:afterSettle", draw);

// The Node front end's Prometheus metrics: the names, labels and buckets of serving/metrics.py, so
// dashboards and alerts work with either front end. Each process keeps plain counters (nothing is
// formatted per request); `snapshot()` is what a worker sends its supervisor, which sums the
// snapshots of all its workers (see workers.js) and renders them with `render()`.
"use strict";
const fs = require("fs");

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const ROW_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

const FAMILIES = {
  inference_requests: ["counter", "gRPC inference-service requests by model, method and final gRPC status code."],
  inference_errors: ["counter", "Requests answered with a status other than OK, by model and code."],
  inference_request_duration_seconds: ["histogram", "Time from receiving a ModelInfer request to its answer, by model."],
  inference_batch_rows: ["histogram", "Rows per onnxruntime call, by model."],
  inference_in_flight_requests: ["gauge", "ModelInfer requests being processed now."],
  inference_queue_length: ["gauge", "Requests waiting for or in an onnxruntime call, by model."],
  inference_queue_length_max: ["gauge", "The largest queue length seen since the server started, by model."],
};

// Label sets are kept as their rendered `{a="x",b="y"}` text (names sorted), built once per series.
function labelText(labels) {
  const names = Object.keys(labels).sort();
  const escape = (v) => String(v).replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
  return names.length ? `{${names.map((n) => `${n}="${escape(labels[n])}"`).join(",")}}` : "";
}

class Histogram {
  constructor(buckets) {
    this.buckets = buckets;
    this.counts = new Array(buckets.length + 1).fill(0); // the last one is +Inf
    this.sum = 0;
  }

  observe(value) {
    let i = 0;
    while (i < this.buckets.length && value > this.buckets[i]) i++;
    this.counts[i]++;
    this.sum += value;
  }
}

class ServerMetrics {
  constructor(models) {
    this.counters = { inference_requests: new Map(), inference_errors: new Map() };
    this.latency = new Map();
    this.rows = new Map();
    this.queue = new Map();
    this.queueMax = new Map();
    this.inFlight = 0;
    for (const model of models) {
      const labels = labelText({ model });
      this.latency.set(labels, new Histogram(LATENCY_BUCKETS));
      this.rows.set(labels, new Histogram(ROW_BUCKETS));
      this.queue.set(labels, 0);
      this.queueMax.set(labels, 0);
    }
    this.seriesCache = new Map();
  }

  // The label text of a (model, method, code) series, cached: the hot path formats nothing.
  series(model, method, code) {
    const key = `${model}\0${method}\0${code}`;
    let labels = this.seriesCache.get(key);
    if (labels === undefined) {
      labels = labelText({ model, method, code });
      this.seriesCache.set(key, labels);
    }
    return labels;
  }

  count(model, method, code) {
    const map = this.counters.inference_requests;
    const labels = this.series(model, method, code);
    map.set(labels, (map.get(labels) || 0) + 1);
    if (code !== "OK") {
      const errors = this.counters.inference_errors;
      const errorLabels = labelText({ model, code });
      errors.set(errorLabels, (errors.get(errorLabels) || 0) + 1);
    }
  }

  // The histogram of a model in `map` (this.latency or this.rows), made on first use.
  histogram(map, model) {
    const labels = labelText({ model });
    let h = map.get(labels);
    if (h === undefined) {
      h = new Histogram(map === this.rows ? ROW_BUCKETS : LATENCY_BUCKETS);
      map.set(labels, h);
    }
    return h;
  }

  // A plain object of everything counted: what a worker sends its supervisor.
  snapshot() {
    const hist = (map) => [...map].map(([labels, h]) => [labels, h.counts.slice(), h.sum]);
    return {
      inference_requests: [...this.counters.inference_requests],
      inference_errors: [...this.counters.inference_errors],
      inference_request_duration_seconds: hist(this.latency),
      inference_batch_rows: hist(this.rows),
      inference_in_flight_requests: [["", this.inFlight]],
      inference_queue_length: [...this.queue],
      inference_queue_length_max: [...this.queueMax],
    };
  }
}

// Combines snapshots: counters and histograms add up (a retired worker's last snapshot is kept so
// sums never go backwards); `live` gauges add over live workers only; the queue maximum is the max.
function combine(retired, live) {
  const total = {};
  const add = (name, labels, value) => {
    const map = (total[name] = total[name] || new Map());
    map.set(labels, (map.get(labels) || 0) + value);
  };
  const addHist = (name, labels, counts, sum) => {
    const map = (total[name] = total[name] || new Map());
    const h = map.get(labels) || { counts: new Array(counts.length).fill(0), sum: 0 };
    counts.forEach((c, i) => (h.counts[i] += c));
    h.sum += sum;
    map.set(labels, h);
  };
  const all = [...retired.map((s) => [s, false]), ...live.map((s) => [s, true])];
  for (const [snap, alive] of all) {
    for (const name of ["inference_requests", "inference_errors"]) {
      for (const [labels, value] of snap[name]) add(name, labels, value);
    }
    for (const name of ["inference_request_duration_seconds", "inference_batch_rows"]) {
      for (const [labels, counts, sum] of snap[name]) addHist(name, labels, counts, sum);
    }
    for (const name of ["inference_in_flight_requests", "inference_queue_length"]) {
      for (const [labels, value] of snap[name]) add(name, labels, alive ? value : 0);
    }
    const max = (total.inference_queue_length_max = total.inference_queue_length_max || new Map());
    for (const [labels, value] of snap.inference_queue_length_max) {
      max.set(labels, Math.max(max.get(labels) || 0, value));
    }
  }
  return total;
}

const formatNumber = (v) => (Number.isInteger(v) ? `${v}.0` : String(v));

// The Prometheus text exposition of combined snapshots plus `extra` lines (process metrics).
function render(total, extra) {
  const lines = [];
  for (const [name, [type, help]] of Object.entries(FAMILIES)) {
    const map = total[name] || new Map();
    lines.push(`# HELP ${name}${type === "counter" ? "_total" : ""} ${help}`);
    lines.push(`# TYPE ${name}${type === "counter" ? "_total" : ""} ${type}`);
    for (const [labels, value] of map) {
      if (type === "histogram") {
        const buckets = name === "inference_batch_rows" ? ROW_BUCKETS : LATENCY_BUCKETS;
        const inner = labels.slice(1, -1);
        let cumulative = 0;
        [...buckets, "+Inf"].forEach((le, i) => {
          cumulative += value.counts[i];
          const bound = le === "+Inf" ? le : formatNumber(le);
          lines.push(`${name}_bucket{${inner ? inner + "," : ""}le="${bound}"} ${formatNumber(cumulative)}`);
        });
        lines.push(`${name}_count${labels} ${formatNumber(cumulative)}`);
        lines.push(`${name}_sum${labels} ${value.sum}`);
      } else {
        lines.push(`${name}${type === "counter" ? "_total" : ""}${labels} ${formatNumber(value)}`);
      }
    }
  }
  return lines.concat(extra).join("\n") + "\n";
}

function gaugeLines(name, type, help, samples) {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples.map(([labels, v]) => `${name}${labels} ${formatNumber(v)}`)];
}

const CLOCK_TICKS = 100; // USER_HZ: /proc reports times in 1/100 s on Linux
const PAGE_SIZE = 4096;

// CPU seconds (own, and of reaped children) and resident bytes of a process, from /proc.
function procStat(pid) {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "latin1").split(")").pop().trim().split(" ");
    return {
      cpu: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS,
      childrenCpu: (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS,
      rss: Number(fields[21]) * PAGE_SIZE,
    };
  } catch {
    return null;
  }
}

// process_* metrics of this process alone (a single-process server).
function processLines() {
  const own = procStat("self");
  const usage = process.cpuUsage();
  let fds = 0;
  try {
    fds = fs.readdirSync("/proc/self/fd").length;
  } catch {}
  return [
    ...gaugeLines("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", [["", (usage.user + usage.system) / 1e6]]),
    ...gaugeLines("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", [["", own ? own.rss : process.memoryUsage().rss]]),
    ...gaugeLines("process_open_fds", "gauge", "Number of open file descriptors.", [["", fds]]),
    ...gaugeLines("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", [["", Math.round(Date.now() / 1000 - process.uptime())]]),
  ];
}

module.exports = { ServerMetrics, combine, render, gaugeLines, procStat, processLines, labelText };

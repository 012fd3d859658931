// `--workers N` for the Node front end: N worker processes serving one port, supervised by the
// primary process, with the behaviour of serving/workers.py:
// - the port is shared through Node's cluster module: the primary opens the listening socket and
//   every worker accepts connections from it (SCHED_NONE; a connection, and so a gRPC channel,
//   stays with its worker), so `--port 0` gives every worker the same free port and a port in use
//   is an error. Not cluster's default round-robin, where the primary accepts and hands each
//   connection over: a connection handed to a worker as it dies stays open with nobody serving
//   it, and its client waits for its deadline instead of failing over (seen in workers_test);
// - the server reports ready only once every worker listens, and not ready while one is missing;
// - the primary serves /metrics for all workers: each worker sends its counters to the primary
//   every second and when a scrape asks, and a dead worker's last counters are kept, so sums never
//   go backwards (a worker killed outright loses at most its last second of counts);
// - SIGTERM/SIGINT reach every worker, each drains as a single server would, and the primary exits 0
//   once all have exited 0;
// - a worker that dies is restarted; one that dies while starting, or more than MAX_RESTARTS times
//   in RESTART_WINDOW_SECONDS, stops the server with status 1, so a crash loop reaches Kubernetes.
"use strict";
const cluster = require("cluster");
const os = require("os");
const { ModelServer, ArtifactError, ConfigError, serveMetrics, log, hostPort, stopSignal } = require("./server");
const { combine, render, gaugeLines, procStat } = require("./metrics");

const MAX_RESTARTS = 5;
const RESTART_WINDOW_SECONDS = 60;
const PUSH_INTERVAL_MS = 1000;
const WORKER_MARK = "--serving-node-worker"; // in a worker's command line, for `ps` and tests

async function workerMain(spec) {
  const signalled = stopSignal();
  const server = new ModelServer(spec);
  try {
    await server.load();
    await server.start(false);
  } catch (e) {
    const known = e instanceof ArtifactError || e instanceof ConfigError;
    process.send({ type: "error", message: known ? e.message : e.stack });
    return 2;
  }
  const push = () => process.send({ type: "metrics", snapshot: server.metrics.snapshot() }, () => {});
  const pusher = setInterval(push, PUSH_INTERVAL_MS);
  process.on("message", (message) => {
    if (message.type === "ready") server.setReady(message.ready);
    else if (message.type === "scrape") push();
  });
  // The primary gone: do not serve on unsupervised.
  const orphaned = new Promise((resolve) => process.once("disconnect", resolve));
  process.send({ type: "started", models: server.describe(), port: server.port });
  await Promise.race([signalled, orphaned]);
  clearInterval(pusher);
  await server.stop();
  if (process.connected) push();
  return 0;
}

class Supervisor {
  constructor(spec) {
    this.spec = spec;
    this.workers = new Map(); // index -> {worker, started, snapshot}
    this.retired = []; // the last snapshots of workers that have exited
    this.restarts = [];
    this.restartCount = 0;
    this.ready = false;
    this.stopping = false;
    this.port = null;
  }

  spawn(index) {
    const worker = cluster.fork({ SERVING_WORKER_INDEX: String(index) });
    const entry = { worker, started: false, snapshot: null, index, waiters: [] }; // waiters: scrapes
    this.workers.set(index, entry);
    worker.on("message", (message) => this.onMessage(entry, message));
    worker.on("exit", (code, signal) => this.onExit(entry, code, signal));
  }

  broadcast(ready) {
    if (ready === this.ready) return;
    this.ready = ready;
    for (const { worker } of this.workers.values()) {
      if (worker.isConnected()) worker.send({ type: "ready", ready }, () => {});
    }
  }

  onMessage(entry, message) {
    if (message.type === "metrics") {
      entry.snapshot = message.snapshot;
      for (const waiter of entry.waiters) waiter();
      entry.waiters = [];
    } else if (message.type === "error") {
      this.finish(`error: ${message.message}`, 2);
    } else if (message.type === "started") {
      entry.started = true;
      this.port = message.port;
      if (!this.stopping && [...this.workers.values()].every((w) => w.started)) {
        this.broadcast(true);
        if (!this.announced) {
          this.announced = true;
          this.onServing(message.models);
        }
      }
    }
  }

  onExit(entry, code, signal) {
    const status = String(signal ? -os.constants.signals[signal] : code); // as Python prints it
    if (this.workers.get(entry.index) !== entry) return;
    if (entry.snapshot) this.retired.push(entry.snapshot);
    this.workers.delete(entry.index);
    if (this.stopping) {
      this.failed = this.failed || code !== 0;
      if (this.workers.size === 0) this.done();
      return;
    }
    this.broadcast(false);
    if (!entry.started) return this.finish(`worker ${entry.index} exited (${status}) while starting`, 1);
    const now = Date.now() / 1000;
    this.restarts = this.restarts.filter((t) => now - t < RESTART_WINDOW_SECONDS).concat([now]);
    if (this.restarts.length > MAX_RESTARTS) {
      return this.finish(
        `worker ${entry.index} exited (${status}); more than ${MAX_RESTARTS} restarts in ${RESTART_WINDOW_SECONDS} s, stopping`,
        1,
      );
    }
    this.restartCount++;
    log(`worker ${entry.index} exited (${status}); restarting it`);
    this.spawn(entry.index);
  }

  // Every worker drains and exits; the server's status is `status`, or 1 if a worker failed.
  finish(message, status) {
    if (this.stopping) return;
    this.stopping = true;
    this.status = status;
    if (message) log(message);
    if (this.workers.size === 0) return this.done();
    const deadline = (this.spec.drain_seconds + this.spec.grace_seconds + 30) * 1000;
    setTimeout(() => {
      for (const { worker } of this.workers.values()) worker.process.kill("SIGKILL");
    }, deadline).unref();
    for (const { worker } of this.workers.values()) worker.process.kill("SIGTERM");
  }

  done() {
    this.resolve(this.failed && this.status === 0 ? 1 : this.status);
  }

  // The current counters of every live worker (asked for, at most 2 s), plus the retired ones.
  async page() {
    const live = [...this.workers.values()].filter((w) => w.worker.isConnected());
    await Promise.all(
      live.map(
        (entry) =>
          new Promise((resolve) => {
            entry.waiters.push(resolve);
            setTimeout(resolve, 2000).unref();
            entry.worker.send({ type: "scrape" }, () => {});
          }),
      ),
    );
    const snapshots = live.map((w) => w.snapshot).filter(Boolean);
    return render(combine(this.retired, snapshots), this.processLines());
  }

  // The whole server's process metrics: primary + live workers + reaped workers.
  processLines() {
    const own = procStat("self");
    const usage = process.cpuUsage();
    let cpu = (usage.user + usage.system) / 1e6 + (own ? own.childrenCpu : 0);
    let rss = own ? own.rss : process.memoryUsage().rss;
    const perWorker = [];
    for (const [index, { worker }] of [...this.workers].sort((a, b) => a[0] - b[0])) {
      const stat = procStat(worker.process.pid);
      if (stat === null) continue;
      cpu += stat.cpu;
      rss += stat.rss;
      perWorker.push([`{worker="${index}"}`, stat.cpu]);
    }
    return [
      ...gaugeLines("process_cpu_seconds_total", "counter", "User and system CPU time of the server: primary and all workers, past and present.", [["", cpu]]),
      ...gaugeLines("process_resident_memory_bytes", "gauge", "Resident memory of the server's live processes, summed.", [["", rss]]),
      ...gaugeLines("serving_worker_cpu_seconds_total", "counter", "CPU time of each live worker process (shows whether load is spread).", perWorker),
      ...gaugeLines("serving_workers_alive", "gauge", "Worker processes alive.", [["", this.workers.size]]),
      ...gaugeLines("serving_worker_restarts_total", "counter", "Workers restarted after dying.", [["", this.restartCount]]),
    ];
  }

  run(onServing) {
    this.onServing = onServing;
    return new Promise((resolve) => {
      this.resolve = resolve;
      cluster.schedulingPolicy = cluster.SCHED_NONE;
      cluster.setupPrimary({ args: [...process.argv.slice(2), WORKER_MARK] });
      for (let i = 0; i < this.spec.workers; i++) this.spawn(i);
    });
  }
}

async function primaryMain(spec) {
  const supervisor = new Supervisor(spec);
  stopSignal().then(() => supervisor.finish(null, 0)); // stopSignal logs the signal
  let httpd = null;
  const status = await supervisor.run(async (models) => {
    let metrics = "";
    if (spec.metrics_port !== null) {
      try {
        httpd = await serveMetrics(spec.metrics_host || spec.host, spec.metrics_port, () => supervisor.page());
        metrics = `, metrics on port ${httpd.address().port}`;
      } catch (e) {
        return supervisor.finish(`error: ${e.message}`, 2);
      }
    }
    log(`serving ${models} with ${spec.workers} workers on ${hostPort(spec.host, supervisor.port)}${metrics}`);
  });
  if (httpd) httpd.close();
  log("stopped");
  return status;
}

function serveWorkers(spec) {
  return cluster.isPrimary ? primaryMain(spec) : workerMain(spec);
}

module.exports = { serveWorkers, WORKER_MARK };

// The Node front end of the model server: the same Open Inference Protocol v2 gRPC service, health
// service, reflection and Prometheus metrics as serving/server.py, with grpc-js and onnxruntime-node
// in place of grpc.aio and onnxruntime (about a third of the server CPU per request: see
// serving/bench/RESULTS.md). main.js runs it.
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const http = require("http");
const os = require("os");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const { ReflectionService } = require("@grpc/reflection");
const ort = require("onnxruntime-node");
const protobuf = require("protobufjs");
const descriptor = require("protobufjs/ext/descriptor");

const { HealthService } = require("./health");
const { ThreadedSession } = require("./threads");
const { nativeSession } = require("./native_session");
const { InferenceService, serviceDefinition, SERVICE } = require("./service");
const { ServerMetrics, combine, render, processLines } = require("./metrics");

// An artifact that must not be served; the message names the file and the problem.
class ArtifactError extends Error {
  constructor(path, problem) {
    super(`${path}: ${problem}`);
  }
}

// A configuration that cannot work (a port in use, a missing TLS file).
class ConfigError extends Error {}

function readSpec() {
  const text = process.env.SERVING_NODE_SPEC;
  if (!text) throw new ConfigError("SERVING_NODE_SPEC is not set: start the Node front end with `python -m serving.server --frontend node`");
  const spec = JSON.parse(text);
  spec.descriptors = Buffer.from(spec.descriptors, "base64");
  return spec;
}

// The model file, checked again against the digest and size the launcher verified (it may have
// changed since), then opened by onnxruntime from the checked bytes.
async function loadModel(model, threads, execution) {
  const path = `${model.directory}/${model.file}`;
  let data;
  try {
    data = fs.readFileSync(path);
  } catch (e) {
    throw new ArtifactError(path, `cannot read: ${e.message}`);
  }
  if (data.length !== model.size) {
    throw new ArtifactError(path, `size is ${data.length} bytes, but model.json records ${model.size} (truncated or replaced?)`);
  }
  const sha256 = crypto.createHash("sha256").update(data).digest("hex");
  if (sha256 !== model.sha256) {
    throw new ArtifactError(path, `sha256 is ${sha256}, but model.json records ${model.sha256} (corrupted?)`);
  }
  const options = { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: "sequential", logSeverityLevel: 3 };
  let session;
  try {
    // The main thread's session: it runs the model inline, or only checks it (`--execution thread`).
    session = await ort.InferenceSession.create(data, options);
    if (execution.threads > 0) {
      const checked = session;
      session = new ThreadedSession(data, options, execution.threads);
      await session.ready();
      session.inputNames = checked.inputNames;
      session.outputNames = checked.outputNames;
      await checked.release();
    } else {
      session = await nativeSession(data, options, session);
    }
  } catch (e) {
    throw new ArtifactError(path, `onnxruntime cannot load the graph: ${e.message}`);
  }
  for (const [kind, names, specs] of [
    ["inputs", session.inputNames, model.inputs],
    ["outputs", session.outputNames, model.outputs],
  ]) {
    const declared = specs.map((s) => s.name).sort();
    if (JSON.stringify([...names].sort()) !== JSON.stringify(declared)) {
      throw new ArtifactError(path, `the graph's ${kind} are ${JSON.stringify([...names].sort())}, but model.json declares ${JSON.stringify(declared)}`);
    }
  }
  return { spec: model, session };
}

const hostPort = (host, port) => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`);

// One server process: loads the models, serves gRPC; `metrics` HTTP only when it is alone.
class ModelServer {
  constructor(spec) {
    this.spec = spec;
    this.root = protobuf.Root.fromDescriptor(descriptor.FileDescriptorSet.decode(spec.descriptors));
    this.metrics = new ServerMetrics(spec.models.map((m) => m.name));
    this.health = new HealthService(this.root);
    this.stopping = false;
  }

  async load() {
    this.models = new Map();
    for (const model of this.spec.models) {
      this.models.set(model.name, await loadModel(model, this.spec.ort_threads, { threads: this.spec.execution_threads }));
    }
    this.inference = new InferenceService(this.root, this.models, this.metrics, {
      maxBatchSize: this.spec.max_batch_size,
      batching: this.spec.batching,
    });
  }

  async start(ready) {
    const spec = this.spec;
    const limit = spec.max_message_bytes;
    this.server = new grpc.Server({
      "grpc.max_receive_message_length": limit,
      "grpc.max_send_message_length": limit,
      "grpc.enable_channelz": 0, // per-call bookkeeping nobody reads here
    });
    this.server.addService(serviceDefinition(this.root), this.inference.handlers());
    this.server.addService(this.health.definition(), this.health.handlers());
    const packages = protoLoader.loadFileDescriptorSetFromBuffer(spec.descriptors);
    new ReflectionService(packages).addToServer(this.server);
    let credentials;
    if (spec.tls_cert) {
      const read = (path) => {
        try {
          return fs.readFileSync(path);
        } catch (e) {
          throw new ConfigError(`cannot read ${path}: ${e.message}`);
        }
      };
      credentials = grpc.ServerCredentials.createSsl(null, [{ private_key: read(spec.tls_key), cert_chain: read(spec.tls_cert) }], false);
    } else {
      credentials = grpc.ServerCredentials.createInsecure();
    }
    this.port = await new Promise((resolve, reject) =>
      this.server.bindAsync(hostPort(spec.host, spec.port), credentials, (error, port) => {
        if (!error) return resolve(port);
        if (/EADDRINUSE/.test(error.message)) return reject(new ConfigError(`port ${spec.port} on ${spec.host} is already in use`));
        reject(new ConfigError(`cannot listen on ${hostPort(spec.host, spec.port)}: ${error.message}`));
      }),
    );
    this.setReady(ready);
  }

  setReady(ready) {
    if (this.stopping) return; // stopping is final
    this.inference.ready = ready;
    for (const service of ["", SERVICE]) this.health.set(service, ready);
  }

  // Graceful stop: report not ready, drain, let in-flight requests finish, then close.
  async stop() {
    this.stopping = true;
    if (this.inference) this.inference.ready = false;
    this.health.shutdown();
    if (this.spec.drain_seconds > 0) await new Promise((r) => setTimeout(r, this.spec.drain_seconds * 1000));
    this.health.close();
    if (!this.server) return;
    await new Promise((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, this.spec.grace_seconds * 1000);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    for (const { session } of this.models.values()) if (session instanceof ThreadedSession) await session.close();
  }

  describe() {
    return this.spec.models.map((m) => `${m.name}@${m.version.slice(0, 12)}`).join(", ");
  }
}

// The /metrics endpoint; `page()` returns the exposition text (a promise).
function serveMetrics(host, port, page) {
  const httpd = http.createServer(async (request, response) => {
    if (request.method !== "GET" || request.url.split("?")[0] !== "/metrics") {
      response.writeHead(404, { "Content-Type": "text/plain" });
      return response.end("not found: the metrics are at /metrics\n");
    }
    try {
      const text = await page();
      response.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
      response.end(text);
    } catch (e) {
      response.writeHead(500, { "Content-Type": "text/plain" });
      response.end(`metrics failed: ${e.message}\n`);
    }
  });
  return new Promise((resolve, reject) => {
    httpd.once("error", (e) => reject(new ConfigError(`metrics port ${port} on ${host}: ${e.message}`)));
    httpd.listen(port, host, () => resolve(httpd));
  });
}

function log(line) {
  try {
    fs.writeSync(2, line + "\n");
  } catch {} // stderr may be a closed pipe; go on
}

// A promise of the first SIGTERM or SIGINT (logged); installed before the models load, so a
// signal during start-up stops the server once it has started instead of killing it.
function stopSignal() {
  return new Promise((resolve) => {
    const onSignal = (signal) => {
      log(`received signal ${os.constants.signals[signal]}; shutting down`);
      resolve(signal);
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  });
}

// `--workers 1`: this process serves.
async function serveAlone(spec) {
  const signalled = stopSignal();
  const server = new ModelServer(spec);
  await server.load();
  await server.start(true);
  let httpd = null;
  if (spec.metrics_port !== null) {
    httpd = await serveMetrics(spec.metrics_host || spec.host, spec.metrics_port, async () =>
      render(combine([], [server.metrics.snapshot()]), processLines()),
    );
  }
  const metrics = httpd ? `, metrics on port ${httpd.address().port}` : "";
  log(`serving ${server.describe()} on ${hostPort(spec.host, server.port)}${metrics}`);
  await signalled;
  await server.stop();
  if (httpd) httpd.close();
  log("stopped");
  return 0;
}

module.exports = { ModelServer, ArtifactError, ConfigError, serveAlone, serveMetrics, log, hostPort, readSpec, stopSignal };

// The GRPCInferenceService (Open Inference Protocol v2) of the Node front end. Requests and answers
// cross grpc-js as bytes and are parsed here with protobufjs, so an undecodable request gets the
// protocol's INVALID_ARGUMENT (as in serving/server.py) rather than grpc-js's INTERNAL.
"use strict";
const { status } = require("@grpc/grpc-js");
const { ModelCodec, RequestError, repr, reprList } = require("./codec");
const { labelText } = require("./metrics");
const { rawMethod } = require("./raw_methods");
const { ModelBatcher } = require("./batcher");

const SERVER_NAME = "ml-monorepo-serving";
const SERVER_VERSION = "1";
const PLATFORM = "onnxruntime_onnx";
const SERVICE = "inference.GRPCInferenceService";
const UNKNOWN_MODEL = "_unknown"; // metrics label for names that are not served (bounded cardinality)
const CODE_NAMES = Object.fromEntries(Object.entries(status).map(([name, code]) => [code, name]));

// The service definition grpc-js needs, every method carrying bytes.
function serviceDefinition(root) {
  const definition = {};
  for (const method of root.lookupService(SERVICE).methodsArray) {
    definition[method.name] = rawMethod(`/${SERVICE}/${method.name}`);
  }
  return definition;
}

class InferenceService {
  // `models`: name -> {spec, session}, loaded and verified by server.js.
  constructor(root, models, metrics, { maxBatchSize, batching }) {
    this.root = root;
    this.models = models;
    this.metrics = metrics;
    this.codecs = new Map([...models].map(([name, m]) => [name, new ModelCodec(m.spec, maxBatchSize)]));
    this.served = [...models.keys()].sort();
    this.ready = false;
    this.types = {};
    for (const method of root.lookupService(SERVICE).resolveAll().methodsArray) {
      this.types[method.name] = [method.resolvedRequestType, method.resolvedResponseType];
    }
    // Per-model series of the hot path, looked up once.
    this.okSeries = new Map(this.served.map((n) => [n, metrics.series(n, "ModelInfer", "OK")]));
    this.latency = new Map(this.served.map((n) => [n, metrics.histogram(metrics.latency, n)]));
    this.rows = new Map(this.served.map((n) => [n, metrics.histogram(metrics.rows, n)]));
    this.modelLabels = new Map(this.served.map((n) => [n, labelText({ model: n })]));
    const batchMajor = (spec) => [...spec.inputs, ...spec.outputs].every((s) => s.shape[0] === -1);
    this.batchers = new Map(
      [...models].map(([name, m]) => [
        name,
        new ModelBatcher(m.session, {
          batching: batching && batchMajor(m.spec),
          maxRows: maxBatchSize,
          onCall: (rows) => this.rows.get(name).observe(rows),
        }),
      ]),
    );
  }

  find(name, version) {
    const model = this.models.get(name);
    if (model === undefined) {
      throw new RequestError(status.NOT_FOUND, `model ${repr(name)} is not served; served models: ${reprList(this.served)}`);
    }
    if (version && version !== model.spec.version) {
      throw new RequestError(
        status.NOT_FOUND,
        `model ${repr(name)} has no version ${repr(version)}; served version: ${model.spec.version}`,
      );
    }
    return model;
  }

  label(name) {
    return this.models.has(name) ? name : UNKNOWN_MODEL;
  }

  parse(method, data) {
    const type = this.types[method][0];
    try {
      return type.decode(data);
    } catch (e) {
      throw new RequestError(status.INVALID_ARGUMENT, `the request is not a valid ${type.fullName.slice(1)}: ${e.message}`);
    }
  }

  encode(method, message) {
    return this.types[method][1].encode(message).finish();
  }

  fail(callback, model, method, error) {
    const code = error instanceof RequestError ? error.code : status.INTERNAL;
    const message = error instanceof RequestError ? error.message : `inference failed: ${error.message}`;
    this.metrics.count(model, method, CODE_NAMES[code]);
    callback({ code, details: message });
  }

  // The grpc-js handlers: name -> (call, callback).
  handlers() {
    const simple = (method, answer) => (call, callback) => {
      let request;
      try {
        request = this.parse(method, call.request);
      } catch (e) {
        return callback({ code: e.code, details: e.message });
      }
      const label = this.label(request.name);
      let message;
      try {
        message = answer(request);
      } catch (e) {
        return this.fail(callback, label, method, e);
      }
      if (method.startsWith("Model")) this.metrics.count(label, method, "OK");
      callback(null, this.encode(method, message));
    };
    const tensors = (specs) => specs.map((s) => ({ name: s.name, datatype: s.datatype, shape: s.shape }));
    return {
      ServerLive: simple("ServerLive", () => ({ live: true })),
      ServerReady: simple("ServerReady", () => ({ ready: this.ready })),
      ServerMetadata: simple("ServerMetadata", () => ({ name: SERVER_NAME, version: SERVER_VERSION, extensions: [] })),
      ModelReady: simple("ModelReady", (r) => (this.find(r.name, r.version), { ready: this.ready })),
      ModelMetadata: simple("ModelMetadata", (r) => {
        const spec = this.find(r.name, r.version).spec;
        return {
          name: spec.name,
          versions: [spec.version],
          platform: PLATFORM,
          inputs: tensors(spec.inputs),
          outputs: tensors(spec.outputs),
        };
      }),
      ModelInfer: (call, callback) => this.infer(call.request, callback),
    };
  }

  // The hot path.
  async infer(data, callback) {
    const start = process.hrtime.bigint();
    const metrics = this.metrics;
    let name = "";
    let queued = null;
    metrics.inFlight++;
    try {
      const request = this.parse("ModelInfer", data);
      name = request.model_name;
      this.find(name, request.model_version);
      const codec = this.codecs.get(name);
      const { feeds, rows } = codec.decodeInputs(request);
      const specs = codec.requestedOutputs(request);
      queued = this.queue(name, 1);
      const results = await this.batchers.get(name).run(feeds, rows);
      callback(null, this.encode("ModelInfer", codec.response(request.id, specs, results)));
      const labels = this.okSeries.get(name);
      const counts = metrics.counters.inference_requests;
      counts.set(labels, (counts.get(labels) || 0) + 1);
    } catch (e) {
      this.fail(callback, this.label(name), "ModelInfer", e);
    } finally {
      metrics.inFlight--;
      if (queued !== null) this.queue(name, -1);
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      (this.latency.get(name) || metrics.histogram(metrics.latency, UNKNOWN_MODEL)).observe(seconds);
    }
  }

  // Requests of a model waiting for or in an onnxruntime call (and the largest such count seen).
  queue(name, delta) {
    const metrics = this.metrics;
    const labels = this.modelLabels.get(name);
    const length = metrics.queue.get(labels) + delta;
    metrics.queue.set(labels, length);
    if (length > metrics.queueMax.get(labels)) metrics.queueMax.set(labels, length);
    return length;
  }
}

module.exports = { InferenceService, serviceDefinition, SERVICE };

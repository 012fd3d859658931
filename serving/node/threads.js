// `--execution thread` for the Node front end: onnxruntime-node runs a model on the calling thread
// (its `run` only defers to the next turn of the event loop), so a slow model would hold the loop,
// and with it health checks, metrics and the reading of new requests. Here each of a model's
// threads (--batch-workers) holds its own session; the loop hands requests over and stays free.
// It costs a copy of the inputs and outputs per request, so it is off by default.
"use strict";
const { Worker, isMainThread, parentPort, workerData } = require("worker_threads");

// A transferable copy of a typed array (its buffer may be a view on a larger one).
const own = (data) => (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice());

class ThreadedSession {
  constructor(modelBytes, options, count) {
    this.modelBytes = modelBytes;
    this.options = options;
    this.threads = [];
    this.nextId = 0;
    for (let i = 0; i < count; i++) this.threads.push(this.spawn());
  }

  spawn() {
    const worker = new Worker(__filename, { workerData: { model: this.modelBytes, options: this.options } });
    const thread = { worker, pending: new Map() };
    worker.on("message", ({ id, outputs, error }) => {
      const call = thread.pending.get(id);
      thread.pending.delete(id);
      if (error !== undefined) call.reject(new Error(error));
      else call.resolve(outputs);
    });
    const fail = (error) => {
      for (const call of thread.pending.values()) call.reject(error);
      thread.pending.clear();
      const index = this.threads.indexOf(thread);
      if (index !== -1 && !this.closed) this.threads[index] = this.spawn();
    };
    worker.on("error", fail);
    worker.on("exit", (code) => code !== 0 && fail(new Error(`the onnxruntime thread exited (${code})`)));
    return thread;
  }

  // Resolves once every thread has loaded the model (or rejects with onnxruntime's error).
  ready() {
    return Promise.all(
      this.threads.map(
        (thread) =>
          new Promise((resolve, reject) => {
            const id = this.nextId++;
            thread.pending.set(id, { resolve, reject });
            thread.worker.postMessage({ id, feeds: null });
          }),
      ),
    );
  }

  // Like InferenceSession.run: output name -> {data, dims}.
  run(feeds) {
    const thread = this.threads.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = this.nextId++;
    const message = {};
    const transfer = [];
    for (const [name, tensor] of Object.entries(feeds)) {
      const data = own(tensor.data);
      message[name] = { type: tensor.type, data, dims: tensor.dims };
      transfer.push(data.buffer);
    }
    return new Promise((resolve, reject) => {
      thread.pending.set(id, { resolve, reject });
      thread.worker.postMessage({ id, feeds: message }, transfer);
    });
  }

  close() {
    this.closed = true;
    return Promise.all(this.threads.map(({ worker }) => worker.terminate()));
  }
}

// A thread: one session; `feeds: null` asks whether it has loaded.
async function threadMain() {
  const ort = require("onnxruntime-node");
  let session;
  let loadError;
  try {
    session = await ort.InferenceSession.create(workerData.model, workerData.options);
  } catch (e) {
    loadError = e.message;
  }
  parentPort.on("message", async ({ id, feeds }) => {
    if (loadError !== undefined) return parentPort.postMessage({ id, error: loadError });
    if (feeds === null) return parentPort.postMessage({ id, outputs: null });
    try {
      const tensors = {};
      for (const [name, t] of Object.entries(feeds)) tensors[name] = new ort.Tensor(t.type, t.data, t.dims);
      const results = await session.run(tensors);
      const outputs = {};
      const transfer = [];
      for (const [name, tensor] of Object.entries(results)) {
        const data = own(tensor.data);
        outputs[name] = { data, dims: tensor.dims };
        transfer.push(data.buffer);
      }
      parentPort.postMessage({ id, outputs }, transfer);
    } catch (e) {
      parentPort.postMessage({ id, error: e.message });
    }
  });
}

if (!isMainThread) threadMain();

module.exports = { ThreadedSession };

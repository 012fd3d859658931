// Batching for the Node front end, as serving/batcher.py does for Python: requests for one model
// that arrive while the event loop is busy are run in one onnxruntime call, their inputs stacked
// along the batch dimension and the outputs split back by rows. An onnxruntime-node call costs
// 30-80 µs of CPU before the model does any work (more than the model itself for small ones), so
// with many requests in flight this cut the server's CPU per request by a fifth (serving/bench/RESULTS.md).
// Only batch-major models (every input and output shaped [-1, ...]) are batched.
"use strict";
const ort = require("onnxruntime-node");

const rowsOf = (tensor) => tensor.dims[0];

// The tensors of `requests` stacked along dimension 0, one per input name.
function stack(requests) {
  const feeds = {};
  for (const name of Object.keys(requests[0].feeds)) {
    const first = requests[0].feeds[name];
    const rowSize = first.data.length / rowsOf(first);
    let rows = 0;
    for (const r of requests) rows += rowsOf(r.feeds[name]);
    const data = new first.data.constructor(rows * rowSize);
    let offset = 0;
    for (const r of requests) {
      data.set(r.feeds[name].data, offset);
      offset += r.feeds[name].data.length;
    }
    feeds[name] = new ort.Tensor(first.type, data, [rows, ...first.dims.slice(1)]);
  }
  return feeds;
}

// Each request's rows of the outputs (views: nothing is copied).
function split(results, requests) {
  const parts = requests.map(() => ({}));
  for (const [name, tensor] of Object.entries(results)) {
    const rowSize = tensor.data.length / rowsOf(tensor);
    const rest = tensor.dims.slice(1);
    let row = 0;
    requests.forEach((r, i) => {
      parts[i][name] = { data: tensor.data.subarray(row * rowSize, (row + r.rows) * rowSize), dims: [r.rows, ...rest] };
      row += r.rows;
    });
  }
  return parts;
}

class ModelBatcher {
  // `session`: an InferenceSession or ThreadedSession; `onCall(rows)`: rows of each call.
  constructor(session, { batching, maxRows, onCall }) {
    this.session = session;
    this.batching = batching;
    this.maxRows = maxRows;
    this.onCall = onCall;
    this.pending = [];
    this.scheduled = false;
  }

  // The outputs for one request's feeds (`rows` of them), as name -> {data, dims}.
  run(feeds, rows) {
    if (!this.batching) {
      this.onCall(rows);
      return this.session.run(feeds);
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ feeds, rows, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  // Runs everything pending, in calls of at most maxRows rows (a request is never split).
  flush() {
    this.scheduled = false;
    const pending = this.pending;
    this.pending = [];
    let batch = [];
    let rows = 0;
    for (const request of pending) {
      if (batch.length && rows + request.rows > this.maxRows) {
        this.call(batch, rows);
        batch = [];
        rows = 0;
      }
      batch.push(request);
      rows += request.rows;
    }
    if (batch.length) this.call(batch, rows);
  }

  async call(batch, rows) {
    this.onCall(rows);
    try {
      if (batch.length === 1) return batch[0].resolve(await this.session.run(batch[0].feeds));
      const parts = split(await this.session.run(stack(batch)), batch);
      batch.forEach((r, i) => r.resolve(parts[i]));
    } catch (e) {
      for (const r of batch) r.reject(e);
    }
  }
}

module.exports = { ModelBatcher };

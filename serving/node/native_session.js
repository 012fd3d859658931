// A model session that runs synchronously. onnxruntime-node's public InferenceSession.run checks
// its arguments, defers the call to the next turn of the event loop and wraps every output again;
// the batcher already runs on a turn of its own, so it calls onnxruntime-node's native session
// directly (about 10 µs less CPU per call). That is onnxruntime-node's internal binding, which
// package.json pins to one version; where it is not what this expects, the public session is used.
"use strict";

let binding = null;
try {
  ({ binding } = require("onnxruntime-node/dist/binding"));
} catch {
  binding = null;
}

class NativeSession {
  constructor(native, inputNames, outputNames) {
    this.native = native;
    this.inputNames = inputNames;
    this.outputNames = outputNames;
    this.fetches = Object.fromEntries(outputNames.map((name) => [name, null]));
    this.runOptions = {};
  }

  // name -> Tensor, like InferenceSession.run, but returned, not promised.
  run(feeds) {
    return this.native.run(feeds, this.fetches, this.runOptions);
  }

  async release() {
    this.native.dispose();
  }
}

// A NativeSession over the model bytes, or `checked` (a public session over the same bytes, which
// has initialised onnxruntime) if the binding is not there. The checked session is released.
async function nativeSession(data, options, checked) {
  if (binding === null || typeof binding.InferenceSession !== "function") return checked;
  const native = new binding.InferenceSession();
  native.loadModel(data.buffer, data.byteOffset, data.byteLength, options);
  const session = new NativeSession(native, checked.inputNames, checked.outputNames);
  await checked.release();
  return session;
}

module.exports = { nativeSession };

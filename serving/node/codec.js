// Decoding Open Inference Protocol requests into onnxruntime tensors, checked against a model's
// signature, and encoding outputs as raw little-endian bytes: the checks and messages of
// serving/codec.py, so both front ends answer a bad request the same way.
"use strict";
const { status } = require("@grpc/grpc-js");
const ort = require("onnxruntime-node");

// KServe v2 datatype -> onnxruntime tensor type, typed array, and the InferTensorContents field
// of its typed values (none for FP16: raw bytes only).
const DATATYPES = {
  BOOL: { ort: "bool", Array: Uint8Array, field: "bool_contents" },
  UINT8: { ort: "uint8", Array: Uint8Array, field: "uint_contents", min: 0, max: 0xff },
  UINT16: { ort: "uint16", Array: Uint16Array, field: "uint_contents", min: 0, max: 0xffff },
  UINT32: { ort: "uint32", Array: Uint32Array, field: "uint_contents", min: 0, max: 0xffffffff },
  UINT64: { ort: "uint64", Array: BigUint64Array, field: "uint64_contents", big: true },
  INT8: { ort: "int8", Array: Int8Array, field: "int_contents", min: -0x80, max: 0x7f },
  INT16: { ort: "int16", Array: Int16Array, field: "int_contents", min: -0x8000, max: 0x7fff },
  INT32: { ort: "int32", Array: Int32Array, field: "int_contents" },
  INT64: { ort: "int64", Array: BigInt64Array, field: "int64_contents", big: true },
  FP16: { ort: "float16", Array: Uint16Array },
  FP32: { ort: "float32", Array: Float32Array, field: "fp32_contents" },
  FP64: { ort: "float64", Array: Float64Array, field: "fp64_contents" },
};

class RequestError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const invalid = (message) => new RequestError(status.INVALID_ARGUMENT, message);

// Python's repr of a string and of a list, as serving/codec.py's messages print them.
const repr = (s) => (s.includes("'") && !s.includes('"') ? `"${s}"` : `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`);
const reprList = (items) => `[${items.map((x) => (typeof x === "string" ? repr(x) : String(x))).join(", ")}]`;

// protobufjs reads int64 fields as Long objects (exact); shapes are compared as numbers.
const toNumber = (v) => (typeof v === "number" ? v : v.toNumber());
const toBigInt = (v) => (typeof v === "number" ? BigInt(v) : BigInt(v.toString()));

function checkShape(spec, shape, maxBatchSize) {
  const expected = spec.shape;
  if (shape.length !== expected.length || expected.some((want, i) => want !== -1 && shape[i] !== want)) {
    throw invalid(`input ${repr(spec.name)}: expected shape ${reprList(expected)}, received ${reprList(shape)}`);
  }
  if (shape.some((d) => d < 0)) {
    throw invalid(`input ${repr(spec.name)}: shape ${reprList(shape)} has a negative dimension`);
  }
  if (expected[0] === -1 && !(shape[0] >= 1 && shape[0] <= maxBatchSize)) {
    throw invalid(
      `input ${repr(spec.name)}: expected a batch size of 1 to ${maxBatchSize}, ` +
        `received ${shape[0]} (shape ${reprList(shape)})`,
    );
  }
}

function decodeTyped(spec, tensor, count, shape) {
  const type = DATATYPES[spec.datatype];
  if (!type.field) {
    throw invalid(`input ${repr(spec.name)}: datatype ${spec.datatype} must be sent in raw_input_contents`);
  }
  const values = (tensor.contents && tensor.contents[type.field]) || [];
  if (values.length !== count) {
    throw invalid(
      `input ${repr(spec.name)}: expected ${count} elements in contents.${type.field} for shape ` +
        `${reprList(shape)}, received ${values.length}`,
    );
  }
  const out = new type.Array(count);
  for (let i = 0; i < count; i++) {
    if (type.big) {
      // protobufjs reads uint64 as unsigned and int64 as signed, so every value fits.
      out[i] = toBigInt(values[i]);
    } else if (type.min !== undefined && (values[i] < type.min || values[i] > type.max)) {
      throw invalid(`input ${repr(spec.name)}: a value does not fit ${spec.datatype}: ${values[i]} is out of bounds`);
    } else {
      out[i] = type.field === "bool_contents" ? (values[i] ? 1 : 0) : values[i];
    }
  }
  return out;
}

function decodeRaw(spec, raw, count, shape) {
  const type = DATATYPES[spec.datatype];
  const expected = count * type.Array.BYTES_PER_ELEMENT;
  if (raw.length !== expected) {
    throw invalid(
      `input ${repr(spec.name)}: expected ${expected} bytes of raw_input_contents ` +
        `(${count} x ${spec.datatype}, shape ${reprList(shape)}), received ${raw.length}`,
    );
  }
  // A typed array over the request's bytes if they are aligned, else over a copy (little-endian
  // hosts only: checked at start-up).
  const size = type.Array.BYTES_PER_ELEMENT;
  const bytes = raw.byteOffset % size === 0 ? raw : Buffer.from(raw);
  return new type.Array(bytes.buffer, bytes.byteOffset, count);
}

// One model's request decoding and response encoding, with the signature's lookups built once.
class ModelCodec {
  constructor(model, maxBatchSize) {
    this.model = model;
    this.maxBatchSize = maxBatchSize;
    this.inputs = new Map(model.inputs.map((s) => [s.name, s]));
    this.inputNames = [...this.inputs.keys()].sort();
    this.outputs = new Map(model.outputs.map((s) => [s.name, s]));
  }

  // The request's inputs as onnxruntime tensors; the batch size (rows) for the metrics.
  decodeInputs(request) {
    const declared = this.inputs;
    const raw = request.raw_input_contents;
    const tensors = request.inputs;
    if (raw.length && raw.length !== tensors.length) {
      throw invalid(
        `expected one raw_input_contents entry per input (${tensors.length}), received ${raw.length}`,
      );
    }
    const feeds = {};
    const batches = new Set();
    let given = 0;
    for (let i = 0; i < tensors.length; i++) {
      const tensor = tensors[i];
      const name = tensor.name;
      const spec = declared.get(name);
      if (spec === undefined) {
        throw invalid(`unknown input ${repr(name)}: expected inputs ${reprList(this.inputNames)}`);
      }
      if (Object.prototype.hasOwnProperty.call(feeds, name)) {
        throw invalid(`input ${repr(name)} is given twice`);
      }
      if (tensor.datatype !== spec.datatype) {
        throw invalid(`input ${repr(name)}: expected datatype ${spec.datatype}, received ${repr(tensor.datatype)}`);
      }
      const shape = tensor.shape.map(toNumber);
      checkShape(spec, shape, this.maxBatchSize);
      const count = shape.reduce((a, b) => a * b, 1);
      let data;
      if (raw.length) {
        if (tensor.contents) {
          throw invalid(
            `input ${repr(name)} has typed contents, but the request also has raw_input_contents; ` +
              "use one or the other",
          );
        }
        data = decodeRaw(spec, raw[i], count, shape);
      } else {
        data = decodeTyped(spec, tensor, count, shape);
      }
      feeds[name] = new ort.Tensor(DATATYPES[spec.datatype].ort, data, shape);
      batches.add(shape[0]);
      given++;
    }
    if (given !== declared.size) {
      const missing = [...declared.keys()].filter((n) => !(n in feeds));
      throw invalid(`missing input(s) ${reprList(missing)}: expected inputs ${reprList(this.inputNames)}`);
    }
    if (given > 1 && batches.size > 1) {
      throw invalid(`inputs disagree on the batch size: ${reprList([...batches].sort((a, b) => a - b))}`);
    }
    return { feeds, rows: batches.values().next().value };
  }

  requestedOutputs(request) {
    if (!request.outputs.length) return this.model.outputs;
    return request.outputs.map((out) => {
      const spec = this.outputs.get(out.name);
      if (spec === undefined) {
        throw invalid(`unknown output ${repr(out.name)}: expected outputs ${reprList([...this.outputs.keys()].sort())}`);
      }
      return spec;
    });
  }

  // The ModelInferResponse message (for protobufjs to encode): raw little-endian outputs.
  response(requestId, specs, results) {
    const outputs = [];
    const raw = [];
    for (const spec of specs) {
      const tensor = results[spec.name];
      const data = tensor.data;
      outputs.push({ name: spec.name, datatype: spec.datatype, shape: tensor.dims });
      raw.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    }
    return {
      model_name: this.model.name,
      model_version: this.model.version,
      id: requestId,
      outputs,
      raw_output_contents: raw,
    };
  }
}

module.exports = { DATATYPES, ModelCodec, RequestError, repr, reprList };

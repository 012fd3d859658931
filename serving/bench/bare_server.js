// The floor of a Node front end for `benchmark.py --bare-command`: a @grpc/grpc-js server whose
// ModelInfer returns fixed bytes, with no parsing, model or metrics (like bare_server.py).
//
//   npm install --prefix /tmp/grpc-js @grpc/grpc-js@1.14.7
//   NODE_PATH=/tmp/grpc-js/node_modules node serving/bench/bare_server.js
//
// Prints `serving bare on 127.0.0.1:PORT` to stderr like the server; stops on SIGTERM.
"use strict";
const grpc = require("@grpc/grpc-js");

const ANSWER = Buffer.from("\n\x04bare", "latin1"); // a valid ModelInferResponse (model_name="bare")
const bytes = (buffer) => buffer; // requests and answers stay bytes: nothing is parsed
const service = {
  ModelInfer: {
    path: "/inference.GRPCInferenceService/ModelInfer",
    requestStream: false,
    responseStream: false,
    requestSerialize: bytes,
    requestDeserialize: bytes,
    responseSerialize: bytes,
    responseDeserialize: bytes,
  },
};

const server = new grpc.Server();
server.addService(service, { ModelInfer: (call, answer) => answer(null, ANSWER) });
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) {
    process.stderr.write(`bare_server.js: ${error.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`serving bare on 127.0.0.1:${port}\n`);
});
process.on("SIGTERM", () => server.tryShutdown(() => process.exit(0)));

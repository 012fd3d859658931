// The floor of a Node front end for `benchmark.py --bare-command`: a @grpc/grpc-js server whose
// ModelInfer returns fixed bytes, with no parsing, model or metrics (like bare_server.py).
//
//   NODE_PATH=serving/node/node_modules node serving/bench/bare_server.js
//
// (serving/node/node_modules: `./pants export-codegen serving/node:node_modules`, then copy
// dist/codegen/serving/node/node_modules there, or `npm ci --ignore-scripts` in serving/node.)
//
// Prints `serving bare on 127.0.0.1:PORT` to stderr like the server; stops on SIGTERM.
"use strict";
const grpc = require("@grpc/grpc-js");
const { rawMethod } = require("../node/raw_methods"); // requests and answers stay bytes

const ANSWER = Buffer.from("\n\x04bare", "latin1"); // a valid ModelInferResponse (model_name="bare")
const service = { ModelInfer: rawMethod("/inference.GRPCInferenceService/ModelInfer") };

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

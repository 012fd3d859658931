// The Node front end's entry point. `python -m serving.server --frontend node` checks the flags and
// every artifact first and passes them here as JSON in SERVING_NODE_SPEC (see
// serving/node_frontend.py); it is not meant to be run by hand.
"use strict";
const os = require("os");
const { ArtifactError, ConfigError, serveAlone, log, readSpec } = require("./server");
const { serveWorkers } = require("./workers");

async function main() {
  if (os.endianness() !== "LE") throw new ConfigError("the Node front end needs a little-endian CPU");
  const spec = readSpec();
  return spec.workers > 1 ? serveWorkers(spec) : serveAlone(spec);
}

main().then(
  (code) => process.exit(code),
  (e) => {
    log(e instanceof ArtifactError || e instanceof ConfigError ? `error: ${e.message}` : `error: ${e.stack}`);
    process.exit(2);
  },
);

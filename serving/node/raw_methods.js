// gRPC method definitions for grpc-js whose requests and answers stay bytes: each service parses
// its own requests, so it decides what an undecodable one gets (grpc-js would answer INTERNAL).
"use strict";
const bytes = (buffer) => buffer;

function rawMethod(path, responseStream = false) {
  return {
    path,
    requestStream: false,
    responseStream,
    requestSerialize: bytes,
    requestDeserialize: bytes,
    responseSerialize: bytes,
    responseDeserialize: bytes,
  };
}

module.exports = { rawMethod };

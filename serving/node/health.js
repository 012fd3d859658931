// The standard gRPC health service (grpc.health.v1.Health: Check and Watch), which Kubernetes'
// gRPC probes call. The server sets each service's status; on shutdown all turn NOT_SERVING.
"use strict";
const { status } = require("@grpc/grpc-js");
const { rawMethod } = require("./raw_methods");

const SERVICE = "grpc.health.v1.Health";
const SERVING = 1;
const NOT_SERVING = 2;
const SERVICE_UNKNOWN = 3;

class HealthService {
  constructor(root) {
    this.request = root.lookupType("grpc.health.v1.HealthCheckRequest");
    this.response = root.lookupType("grpc.health.v1.HealthCheckResponse");
    this.statuses = new Map();
    this.watchers = new Map(); // send function -> its Watch call
    this.final = false;
  }

  definition() {
    return { Check: rawMethod(`/${SERVICE}/Check`), Watch: rawMethod(`/${SERVICE}/Watch`, true) };
  }

  set(service, serving) {
    if (this.final) return; // shutting down is final
    this.statuses.set(service, serving ? SERVING : NOT_SERVING);
    for (const send of this.watchers.keys()) send();
  }

  // Every service NOT_SERVING, for good.
  shutdown() {
    for (const service of this.statuses.keys()) this.set(service, false);
    this.final = true;
  }

  answer(value) {
    return this.response.encode({ status: value }).finish();
  }

  decode(data) {
    try {
      return this.request.decode(data).service;
    } catch (e) {
      return e;
    }
  }

  handlers() {
    return {
      Check: (call, callback) => {
        const service = this.decode(call.request);
        if (service instanceof Error) {
          return callback({ code: status.INVALID_ARGUMENT, details: `the request is not a valid HealthCheckRequest: ${service.message}` });
        }
        const value = this.statuses.get(service);
        if (value === undefined) return callback({ code: status.NOT_FOUND, details: `unknown service ${JSON.stringify(service)}` });
        callback(null, this.answer(value));
      },
      Watch: (call) => {
        const service = this.decode(call.request);
        if (service instanceof Error) {
          return call.emit("error", { code: status.INVALID_ARGUMENT, details: service.message });
        }
        let last = null;
        const send = () => {
          const value = this.statuses.get(service) ?? SERVICE_UNKNOWN;
          if (value !== last) {
            last = value;
            call.write(this.answer(value));
          }
        };
        this.watchers.set(send, call);
        call.on("cancelled", () => this.watchers.delete(send));
        call.on("close", () => this.watchers.delete(send));
        send();
      },
    };
  }

  // Ends the open Watch streams (the server is closing; they would hold its graceful stop).
  close() {
    for (const call of this.watchers.values()) call.end();
    this.watchers.clear();
  }
}

module.exports = { HealthService, SERVICE };

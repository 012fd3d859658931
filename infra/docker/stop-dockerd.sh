#!/usr/bin/env bash
# Stops the engine that start-dockerd.sh started (by the pid in its pidfile) and waits for it.
# DOCKERD_DIR as for start-dockerd.sh; PURGE=1 also deletes its data root (images, containers).
set -euo pipefail

dir="${DOCKERD_DIR:-/tmp/mlbuild-dockerd}"
pidfile="${dir}/docker.pid"
if [[ -f "${pidfile}" ]] && pid="$(cat "${pidfile}")" && kill -0 "${pid}" 2>/dev/null; then
  kill -TERM "${pid}"
  for _ in $(seq 1 60); do
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "${pid}" 2>/dev/null; then
    echo "stop-dockerd: dockerd ${pid} still running after 30 s; killing it" >&2
    kill -KILL "${pid}"
  fi
  echo "stop-dockerd: stopped dockerd ${pid}" >&2
else
  echo "stop-dockerd: no dockerd running for ${dir}" >&2
fi
if [[ "${PURGE:-0}" == 1 ]]; then
  rm -rf "${dir}"
fi

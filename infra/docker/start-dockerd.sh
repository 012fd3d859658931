#!/usr/bin/env bash
# Starts a private Docker engine for tests (Debian's docker.io, installed if missing) with its own
# socket, data root, exec root and pidfile under one directory, waits until it answers, and prints
# the DOCKER_HOST to use on stdout (everything else goes to stderr):
#
#   export DOCKER_HOST="$(infra/docker/start-dockerd.sh)"   # e.g. unix:///tmp/mlbuild-dockerd/docker.sock
#   ./pants test ::                                          # pants.toml passes DOCKER_HOST to tests
#   infra/docker/stop-dockerd.sh
#
# DOCKERD_DIR (default /tmp/mlbuild-dockerd) says where; an engine already running there is reused.
# Needs root (as CI and developers are here). No registry is needed: images come from `pants package`.
set -euo pipefail

dir="${DOCKERD_DIR:-/tmp/mlbuild-dockerd}"
sock="${dir}/docker.sock"
pidfile="${dir}/docker.pid"
host="unix://${sock}"
log() { echo "start-dockerd: $*" >&2; }

answers() { DOCKER_HOST="${host}" /usr/bin/docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if [[ -f "${pidfile}" ]] && kill -0 "$(cat "${pidfile}")" 2>/dev/null && answers; then
  log "reusing the engine of pid $(cat "${pidfile}")"
  echo "${host}"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || [[ ! -x /usr/bin/docker ]]; then
  log "installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  # The package's own service start is refused here (policy-rc.d); we start the daemon ourselves.
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends docker.io iptables >&2
fi

mkdir -p "${dir}"
rm -f "${sock}" "${pidfile}"
log "starting dockerd (log: ${dir}/dockerd.log)"
# setsid: the daemon outlives this script and is not hit by the caller's Ctrl-C.
setsid dockerd \
  --host "${host}" \
  --data-root "${dir}/root" \
  --exec-root "${dir}/exec" \
  --pidfile "${pidfile}" \
  >"${dir}/dockerd.log" 2>&1 </dev/null &

for _ in $(seq 1 120); do
  if answers; then
    log "dockerd $(DOCKER_HOST="${host}" /usr/bin/docker version --format '{{.Server.Version}}') ready, pid $(cat "${pidfile}")"
    echo "${host}"
    exit 0
  fi
  sleep 0.5
done
log "dockerd did not answer within 60 s; the end of its log:"
tail -n 30 "${dir}/dockerd.log" >&2
exit 1

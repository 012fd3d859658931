# Shared settings of infra/remote-cache/{install,start,stop,status,issue-token,rotate-signing-key};
# sourced, not run. Every value can be overridden from the environment (tests use a temporary
# directory and port 0).
CACHE_DIR="${ML_REMOTE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/ml-monorepo/remote-cache}"
CACHE_HOST="${REMOTE_CACHE_HOST:-127.0.0.1}"
# The DNS name clients use (grpcs://NAME:PORT), in the server certificate. Pants 2.17's TLS
# (rustls) refuses IP addresses as server names ("InvalidDNSNameError"), so not 127.0.0.1.
CACHE_NAME="${REMOTE_CACHE_NAME:-localhost}"
# The one endpoint (TLS); 0: any free port (the chosen one is written to run/address).
CACHE_PORT="${REMOTE_CACHE_PORT:-50051}"
# Redis (the persistent action cache) listens on CACHE_HOST only; 0: any free port.
REDIS_PORT="${REMOTE_CACHE_REDIS_PORT:-6390}"
# server.pem + server.key (+ ca.pem for clients). Unset: a local CA made by `start` in tls/.
TLS_DIR="${REMOTE_CACHE_TLS_DIR:-${CACHE_DIR}/tls}"
# The token signing key pair: the server needs only the public half; `issue-token` the private.
SIGNING_KEY="${REMOTE_CACHE_SIGNING_KEY:-${CACHE_DIR}/keys/token-signing.key}"
VERIFY_KEY="${REMOTE_CACHE_VERIFY_KEY:-${CACHE_DIR}/keys/token-signing.pub}"
REDIS_PASSWORD_FILE="${CACHE_DIR}/keys/redis.password"
BUILDGRID_VERSION="0.9.1"
BG_VENV="${REMOTE_CACHE_VENV:-${XDG_CACHE_HOME:-${HOME}/.cache}/ml-monorepo/buildgrid-${BUILDGRID_VERSION}}"
BG_PYTHON="${BG_VENV}/bin/python"

# is_running NAME: the process recorded in run/NAME.pid is alive.
is_running() {
  local pid_file="${CACHE_DIR}/run/$1.pid"
  [[ -f "${pid_file}" ]] && kill -0 "$(cat "${pid_file}")" 2>/dev/null
}

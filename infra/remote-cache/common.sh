# Shared settings of infra/remote-cache/{start,stop,status,sharing-test}; sourced, not run.
# Every value can be overridden from the environment (tests use other ports and directories).
CACHE_DIR="${ML_REMOTE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/ml-monorepo/remote-cache}"
CACHE_HOST="${REMOTE_CACHE_HOST:-127.0.0.1}"
CI_PORT="${REMOTE_CACHE_CI_PORT:-50051}"
DEV_PORT="${REMOTE_CACHE_DEV_PORT:-50052}"
REDIS_PORT="${REMOTE_CACHE_REDIS_PORT:-6390}"
INSTANCE_NAME="main"
BUILDGRID_VERSION="0.9.1"
BG_VENV="${REMOTE_CACHE_VENV:-${XDG_CACHE_HOME:-${HOME}/.cache}/ml-monorepo/buildgrid-${BUILDGRID_VERSION}}"

# is_running NAME: the process recorded in run/NAME.pid is alive.
is_running() {
  local pid_file="${CACHE_DIR}/run/$1.pid"
  [[ -f "${pid_file}" ]] && kill -0 "$(cat "${pid_file}")" 2>/dev/null
}

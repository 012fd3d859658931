# Shared by infra/datastore/start, stop and upload: where the store's files live.
# shellcheck shell=bash
dir="${DATASTORE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/ml-monorepo/datastore}"
pidfile="${dir}/nginx.pid"
USERNAME="${DATASTORE_USERNAME:-ci}"

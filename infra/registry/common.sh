# Shared by infra/registry/start and stop: where the registry's files live.
# shellcheck shell=bash
dir="${REGISTRY_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/ml-monorepo/registry}"
pidfile="${dir}/registry.pid"
USERNAME="${REGISTRY_USERNAME:-ci}"

#!/usr/bin/env bash
# Builds the given model_image targets twice with Pants's process cache off (every layer really
# rebuilt) and fails unless both builds give the same image digests.
#   infra/images/check-reproducible.sh tests/images::
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ $# -gt 0 ]] || set -- tests/images::

digests() {
  ./pants --no-local-cache package "$@" >&2
  ./pants list --filter-target-type=model_image "$@" | while read -r address; do
    spec="${address%%:*}"
    name="${address##*:}"
    cat "dist/${spec//\//.}/${name}.digest"
  done
}

first="$(digests "$@")"
second="$(digests "$@")"
echo "${first}"
if [[ "${first}" != "${second}" ]]; then
  echo "check-reproducible: the second build gave other digests:" >&2
  echo "${second}" >&2
  exit 1
fi
echo "check-reproducible: both builds gave the same digests" >&2

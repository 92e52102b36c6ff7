#!/usr/bin/env bash
# One script, two set-up commands (see README):
#   ./setup.sh run   — install system + Python packages, then run the agent (embedded default, no config)
#   ./setup.sh test  — install system + Python + test packages (and the optional MLX title refiner, so its
#                      tests run), then run lint and the whole test suite
# Works on a fresh Debian 12 as root or as a user with sudo. Idempotent: a second call installs nothing.
set -euo pipefail
cd "$(dirname "$0")"

RUN_APT=(python3 python3-venv python3-dev iproute2 wireguard-go ffmpeg libmpv2)
# chromium: the dashboard's browser test (Playwright drives Debian's build); systemd: systemd-analyze
# verifies the service unit; wrk: bench_agent's load generator.
TEST_APT=(iputils-ping transmission-daemon procps psmisc chromium systemd wrk)
VENV=${TVA_VENV:-.venv}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

py_install() {
    local extras=$1
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.installed-$extras" sum
    sum=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
        echo "$sum" > "$stamp"
    fi
}

case "${1:-}" in
    run)
        shift
        apt_install "${RUN_APT[@]}"
        py_install ""
        exec "$VENV/bin/tva-agent" run "$@"
        ;;
    test)
        shift
        apt_install "${RUN_APT[@]}" "${TEST_APT[@]}"
        py_install test,plot,refiner
        "$VENV/bin/ruff" check .
        # pytest exits 5 when it collected nothing: that is a failure here, never a pass.
        # The 25 slowest tests are listed at the end, so a suite creeping past its ~15 min shows where.
        exec "$VENV/bin/python" -m pytest -q --durations=25 "$@"
        ;;
    *)
        echo "usage: ./setup.sh run [tva-agent run flags] | ./setup.sh test [pytest args]" >&2
        exit 2
        ;;
esac

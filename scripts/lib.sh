# Shared set-up steps for scripts/demo and scripts/test (sourced, not run).

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "need root or sudo to run: $*" >&2
        return 1
    fi
}

# Install the Debian packages given that are missing (plus a Python with venv if needed).
# Safe to run again: on a machine that has everything it installs nothing.
install_debian_packages() {
    local packages=("$@") missing=()
    if ! command -v python3 >/dev/null 2>&1; then
        packages+=(python3 python3-venv)
    elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        packages+=(python3-venv)  # Debian's python3 has no ensurepip without it
    fi
    for pkg in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "== installing: ${missing[*]}"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            "${missing[@]}"
    fi
    # The package starts a system Dovecot on port 143. The project runs its own Dovecots on
    # free loopback ports, but stop the system one anyway (only if it runs: the init script
    # matches by its pid file, so this never touches the project's own Dovecots).
    if [ "${#missing[@]}" -gt 0 ] || [ -e /run/dovecot/master.pid ]; then
        as_root service dovecot stop >/dev/null 2>&1 || true
    fi
}

# A virtualenv in .venv with the project installed (editable, with the given extras).
make_venv() {
    local extras="${1:-}"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    if [ -n "$extras" ]; then
        .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
    else
        .venv/bin/python -m pip install -q --disable-pip-version-check -e .
    fi
}

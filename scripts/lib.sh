# Shared set-up steps for scripts/demo and scripts/test (sourced, not run).

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root (or sudo) to run: $*" >&2; return 1; fi
}

# Install the Debian packages given that are missing.
install_debian_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}"
        # The package may start a system Dovecot; the project runs its own on other ports.
        as_root service dovecot stop >/dev/null 2>&1 || true
    fi
}

# A virtualenv in .venv with the project installed (editable, with the given extras).
make_venv() {
    local extras="${1:-}"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    if [ -n "$extras" ]; then .venv/bin/pip install -q -e ".[$extras]"; else .venv/bin/pip install -q -e .; fi
}

# Shared by the benchmark scripts: installs redis-server (with redis-cli) from
# the Debian packages if missing, without starting its system service.
# Usage: source scripts/lib/install-redis.sh; install_redis
POLICY=/usr/sbin/policy-rc.d
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

remove_policy() {
    "${SUDO[@]}" rm -f "$POLICY"
}

install_redis() {
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        return
    fi
    echo "installing redis-server (apt-get)" >&2
    # A policy-rc.d that exits 101 tells invoke-rc.d / deb-systemd-invoke not to
    # start the packaged service; ours is created only if none exists.
    local created=0
    if [ ! -e "$POLICY" ]; then
        trap remove_policy EXIT
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
        "${SUDO[@]}" chmod 755 "$POLICY"
        created=1
    fi
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
    if [ "$created" -eq 1 ]; then
        remove_policy
        trap - EXIT
    fi
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        echo "redis-server or redis-cli still missing after install" >&2
        exit 1
    fi
}


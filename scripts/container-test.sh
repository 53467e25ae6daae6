#!/usr/bin/env bash
# Build the ticketclf image with no Docker daemon and no container registry (DESIGN.md §3):
# buildah and podman from Debian, a Python base image made locally with debootstrap.
#
#   scripts/container-test.sh [TAG [CONTEXT]]   defaults: localhost/ticketclf:test, the checkout
#
# 1. Installs buildah, podman, runc and debootstrap from Debian when missing (root + apt);
#    exits 3 when they are missing and cannot be installed.
# 2. Makes the base image once (Debian bookworm minbase + python3 + venv + CA certificates,
#    with this machine's proxy CA trusted), caches its tarball in $TICKETCLF_BUILD_CACHE
#    (default ~/.cache/ticketclf) and imports it with podman.
# 3. Builds CONTEXT/Dockerfile with --build-arg BASE=<that image>, reusing cached layers.
# Prints key=value lines for callers (tests/test_container.py): image, base, size_bytes,
# base_size_bytes,
# containers_conf (the podman settings to run the image with), seconds.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TAG=${1:-localhost/ticketclf:test}
CONTEXT=${2:-$ROOT}
CACHE=${TICKETCLF_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ticketclf}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_PACKAGES=python3,python3-venv,ca-certificates
# The tarball's name carries its recipe (bump slim-N when the steps below change), so a
# changed recipe makes a new tarball instead of reusing a stale one.
BASE_ID=$(printf '%s %s' bookworm-slim-2 "$BASE_PACKAGES" | sha256sum | cut -c1-12)
BASE_TAR=$CACHE/pybase-bookworm-$BASE_ID.tar
BASE=localhost/ticketclf-base:bookworm-$BASE_ID
started=$(date +%s)

need=()
for b in buildah podman runc debootstrap; do command -v "$b" >/dev/null || need+=("$b"); done
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "container-test: missing ${need[*]} and cannot install them (needs root and apt-get)" >&2
    exit 3
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    buildah podman runc debootstrap >/dev/null
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9  # one build at a time: parallel runs would both debootstrap

# crun refuses this machine's hybrid cgroups, and containers may not raise rlimits: runc and
# fixed limits, in a file the caller also runs the image with.
CONF=$CACHE/containers.conf
cat >"$CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=8192:8192", "nproc=8192:8192"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF=$CONF

if ! podman image exists "$BASE"; then
  if [[ ! -s $BASE_TAR ]]; then
    root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$root" "$MIRROR" >/dev/null
    # HTTPS here may go through a proxy with its own CA: pip inside RUN must trust it too.
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
    chroot "$root" update-ca-certificates >/dev/null
    # Trimmed like the official -slim images: no docs, man pages, locales or apt lists.
    chroot "$root" sh -c 'apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
      /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/*'
    : >"$root/etc/resolv.conf"
    rm -f "$root/etc/hostname"
    tar --numeric-owner -C "$root" -cf "$BASE_TAR.part" .
    mv "$BASE_TAR.part" "$BASE_TAR"
    rm -rf "$root"
    trap - EXIT
  fi
  # PIP_CERT: the venv's pip reads certifi's bundle, not the system store that holds the proxy CA.
  podman import -q --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' "$BASE_TAR" "$BASE" >/dev/null
fi

# --layers keeps each step's result, so a rebuild after a code change only reinstalls the
# package; --format docker keeps the HEALTHCHECK (the OCI format has no field for it).
buildah bud -q --isolation=chroot --network=host --pull=never --layers --format docker \
  --build-arg BASE="$BASE" -t "$TAG" "$CONTEXT" >/dev/null

echo "image=$TAG"
echo "base=$BASE"
echo "size_bytes=$(podman image inspect "$TAG" --format '{{.Size}}')"
echo "base_size_bytes=$(podman image inspect "$BASE" --format '{{.Size}}')"
echo "containers_conf=$CONF"
echo "seconds=$(($(date +%s) - started))"

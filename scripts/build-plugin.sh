#!/bin/sh
# Build ovsgre as a managed (v2) Docker plugin and create it in dockerd.
#
#   sudo ./scripts/build-plugin.sh [NAME]        # NAME: ovsgre/ovsgre:latest
#
# Steps: a Debian 12 base image (debootstrap --variant=minbase with python3,
# python3-venv, openvswitch-common, iproute2, ethtool, iputils-ping for
# `ovsgre doctor`'s peer check; made once and cached),
# wheels of this repository and its dependencies (`pip wheel`, on this host:
# nothing inside a build needs a package index), `docker build` of
# Dockerfile on that base, `docker create` + `docker export` into
# BUNDLE/rootfs, config.json beside it, `docker plugin create NAME BUNDLE`.
# The plugin is left disabled: set its options, then enable it (the commands
# are printed at the end).
#
# Environment (all optional):
#   DOCKER_HOST          the dockerd to build in and create the plugin in
#                        (passed as `docker -H`), e.g. unix:///run/docker.sock
#   DOCKER               docker client                       (docker)
#   PYTHON               Python that runs `pip wheel`; its version should be
#                        the image's (3.11 on Debian 12)      (python3)
#   OVSGRE_BASE_IMAGE    use this existing image as the base (must hold
#                        python3, python3-venv, openvswitch-common; without
#                        iputils-ping `ovsgre doctor` run in the plugin
#                        cannot ping peers)
#   OVSGRE_BASE_CACHE    where the debootstrap tarball is cached
#                        (/var/cache/ovsgre)
#   OVSGRE_MIRROR        Debian mirror for debootstrap (default: the first
#                        bookworm mirror in /etc/apt/sources.list{,.d/})
#   OVSGRE_WHEELS        use the wheels in this directory (skip `pip wheel`)
#   OVSGRE_PLUGIN_DIR    build the bundle (config.json + rootfs/) here and
#                        keep it (default: a temporary directory, removed)
#   OVSGRE_BUNDLE        skip the build: create the plugin from this bundle
#                        (made earlier with OVSGRE_PLUGIN_DIR)
set -eu

NAME=${1:-ovsgre/ovsgre:latest}
REPO=$(cd "$(dirname "$0")/.." && pwd)
DOCKER=${DOCKER:-docker}
PYTHON=${PYTHON:-python3}
SUITE=bookworm
export DOCKER_BUILDKIT=0    # the classic builder: FROM a local image only
BASE_TAG=ovsgre/debian-base:$SUITE
CACHE=${OVSGRE_BASE_CACHE:-/var/cache/ovsgre}
# iputils-ping: `ovsgre doctor` run inside the plugin pings every peer.
PACKAGES=python3,python3-venv,openvswitch-common,iproute2,ethtool,iputils-ping,ca-certificates
# A base made with another package list (an older version of this script)
# is not reused: the cached tarball's name and the image's label carry it.
PKG_SUM=$(printf '%s' "$PACKAGES" | cksum | cut -d' ' -f1)

say() { printf '%s\n' "build-plugin: $*" >&2; }
die() { say "error: $*"; exit 1; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

dk() {
    if [ -n "${DOCKER_HOST:-}" ]; then
        "$DOCKER" -H "$DOCKER_HOST" "$@"
    else
        "$DOCKER" "$@"
    fi
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ovsgre-plugin.XXXXXX")
CID=""
cleanup() {
    [ -n "$CID" ] && dk rm -f "$CID" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The Debian mirror of this host's apt sources (deb822 .sources or
# one-line .list), preferring an entry for $SUITE; never a built-in host.
debian_mirror() {
    if [ -n "${OVSGRE_MIRROR:-}" ]; then
        printf '%s\n' "$OVSGRE_MIRROR"
        return 0
    fi
    "$PYTHON" - "$SUITE" <<'PY'
import glob, re, sys
suite = sys.argv[1]
entries = []                       # (uri, suites)
files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
for path in files:
    try:
        text = open(path).read()
    except OSError:
        continue
    for line in text.splitlines():
        line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb":
            entries.append((line[1], [line[2]]))
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    try:
        text = open(path).read()
    except OSError:
        continue
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.split()
        if "deb" not in fields.get("types", []) or \
                fields.get("enabled", ["yes"])[0].lower() == "no":
            continue
        for uri in fields.get("uris", []):
            entries.append((uri, fields.get("suites", [])))
ok = [(u, s) for u, s in entries if re.match(r"(https?|file)://", u)]
for uri, suites in ok:
    if suite in suites:
        print(uri)
        sys.exit(0)
for uri, suites in ok:       # another Debian release: same archive layout
    if "security" not in uri and not any("security" in s for s in suites):
        print(uri)
        sys.exit(0)
sys.exit(1)
PY
}

base_image() {
    if [ -n "${OVSGRE_BASE_IMAGE:-}" ]; then
        dk image inspect "$OVSGRE_BASE_IMAGE" >/dev/null 2>&1 ||
            die "base image $OVSGRE_BASE_IMAGE not found in dockerd"
        BASE=$OVSGRE_BASE_IMAGE
        return 0
    fi
    BASE=$BASE_TAG
    if [ "$(dk image inspect -f '{{index .Config.Labels "ovsgre.packages"}}' \
            "$BASE" 2>/dev/null)" = "$PACKAGES" ]; then
        say "base image $BASE: present"
        return 0
    fi
    tarball=$CACHE/debian-$SUITE-minbase-$PKG_SUM.tar
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null ||
            die "debootstrap is missing (apt-get install debootstrap), or set OVSGRE_BASE_IMAGE"
        mirror=$(debian_mirror) ||
            die "no Debian mirror in /etc/apt/sources.list{,.d}: set OVSGRE_MIRROR"
        say "debootstrap $SUITE from $mirror (once; cached in $tarball)"
        t0=$(now)
        root=$TMP/debootstrap
        if ! debootstrap --variant=minbase --include="$PACKAGES" \
                "$SUITE" "$root" "$mirror" >"$TMP/debootstrap.log" 2>&1; then
            tail -n 30 "$TMP/debootstrap.log" >&2
            die "debootstrap failed"
        fi
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
            "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale
        mkdir -p "$CACHE"
        tar --numeric-owner -C "$root" -cf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        rm -rf "$root"
        say "debootstrap took $(took "$t0")"
    fi
    t0=$(now)
    dk import -c 'CMD ["/bin/bash"]' -c "LABEL ovsgre.packages=$PACKAGES" \
        "$tarball" "$BASE" >/dev/null
    say "docker import ($BASE) took $(took "$t0")"
}

build_bundle() {
    bundle=$1
    ctx=$TMP/context
    mkdir -p "$ctx/wheels"
    t0=$(now)
    if [ -n "${OVSGRE_WHEELS:-}" ]; then
        cp "$OVSGRE_WHEELS"/*.whl "$ctx/wheels/"
    else
        # Build from a copy: pip writes build/ and *.egg-info into the tree.
        src=$TMP/src
        mkdir -p "$src"
        cp -r "$REPO/plugin" "$REPO/setup.cfg" "$REPO/pyproject.toml" \
            "$REPO/README.md" "$src/"
        [ -f "$REPO/setup.py" ] && cp "$REPO/setup.py" "$src/"
        find "$src" -name '*.egg-info' -prune -exec rm -rf {} +
        find "$src" -name __pycache__ -prune -exec rm -rf {} +
        pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        [ "$pyver" = 3.11 ] || [ -n "${OVSGRE_BASE_IMAGE:-}" ] ||
            say "warning: $PYTHON is Python $pyver, Debian 12's is 3.11:" \
                "wheels with compiled code will not install (PYTHON=python3.11)"
        "$PYTHON" -m pip wheel -q --disable-pip-version-check \
            -w "$ctx/wheels" "$src" >"$TMP/pip.log" 2>&1 ||
            { tail -n 30 "$TMP/pip.log" >&2; die "pip wheel failed"; }
    fi
    say "pip wheel ($(ls "$ctx/wheels" | wc -l) wheels) took $(took "$t0")"
    cp "$REPO/Dockerfile" "$ctx/Dockerfile"

    t0=$(now)
    image=ovsgre/plugin-rootfs:build-$$
    dk build -q --build-arg "BASE=$BASE" -t "$image" \
        "$ctx" >"$TMP/build.log" 2>&1 ||
        { tail -n 40 "$TMP/build.log" >&2; die "docker build failed"; }
    say "docker build took $(took "$t0")"

    t0=$(now)
    rm -rf "$bundle/rootfs"
    mkdir -p "$bundle/rootfs"
    CID=$(dk create "$image")
    dk export "$CID" | tar -C "$bundle/rootfs" -xf -
    dk rm -f "$CID" >/dev/null
    CID=""
    dk rmi "$image" >/dev/null 2>&1 || true
    cp "$REPO/config.json" "$bundle/config.json"
    say "docker export ($(du -sh "$bundle/rootfs" | cut -f1) rootfs) took $(took "$t0")"
}

if [ -n "${OVSGRE_BUNDLE:-}" ]; then
    BUNDLE=$OVSGRE_BUNDLE
    [ -f "$BUNDLE/config.json" ] && [ -d "$BUNDLE/rootfs" ] ||
        die "$BUNDLE has no config.json and rootfs/"
else
    BUNDLE=${OVSGRE_PLUGIN_DIR:-$TMP/bundle}
    mkdir -p "$BUNDLE"
    base_image
    build_bundle "$BUNDLE"
fi

if dk plugin inspect "$NAME" >/dev/null 2>&1; then
    die "plugin $NAME exists: docker plugin disable $NAME && docker plugin rm $NAME first"
fi
t0=$(now)
dk plugin create "$NAME" "$BUNDLE" >/dev/null
say "docker plugin create ($NAME) took $(took "$t0")"

driver_name=""
[ "$NAME" != ovsgre/ovsgre:latest ] &&
    driver_name="
  docker plugin set $NAME OVSGRE_DRIVER_NAME=$NAME"
cat <<EOF
Plugin $NAME created (disabled).  Its state mount's source must exist:
  mkdir -p /var/lib/ovsgre
Settings (while disabled; see config.json for every OVSGRE_* variable):$driver_name
  docker plugin set $NAME OVSGRE_SCOPE=global        # swarm-scope networks
  docker plugin set $NAME OVSGRE_ETCD=http://ETCD:2379 OVSGRE_LOCAL_IP=IP
  docker plugin set $NAME ovs-rundir.source=DIR      # OVS run dir, if not /var/run/openvswitch
Then:
  docker plugin enable $NAME
  docker network create -d $NAME --subnet 198.18.10.0/24 blue
EOF

#!/usr/bin/env bash
# Builds and runs the project's container images without a Docker engine, with Debian's buildah and podman:
#   scripts/services/containers.sh base|build engine|model-server|image NAME|sizes|stop|env
# The Debian packages (buildah, podman, runc, mmdebstrap) come from scripts/system-packages.sh.
# `base` makes a stand-in for the Dockerfiles' base image, since no image registry can be reached: a minimal Debian
# bookworm with Debian's Python 3.11, tagged with the exact name the Dockerfiles use, so that `--pull=never` finds
# it (made once per machine, about a minute). `build NAME` builds `Dockerfile` (engine) or `serving/Dockerfile`
# (model-server) and prints the image's name; `sizes` prints each image's size; `stop` removes the containers
# left in the store. Everything lives in the git-ignored .bin/containers: the image store and the configuration
# that `env` points podman and buildah at (with AIOPS_TEST_CONTAINERS, which turns the image tests on).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DIR=$ROOT/.bin/containers
BASE=docker.io/library/python:3.11.13-slim-bookworm
# What the stand-in holds; a change of this list or of the options below makes it again (the stamp names both).
BASE_PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
# Like Debian's slim images: no Recommends, no manual pages, documentation (but the copyright files) or
# translations; /usr merged by a hook rather than the usrmerge package, which would bring in Perl.
BASE_OPTIONS=(
  --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --aptopt='APT::Install-Recommends "false"'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
)
BASE_STAMP=$DIR/.base-$(echo "$BASE $BASE_PACKAGES ${BASE_OPTIONS[*]}" | sha256sum | cut -c1-12)

log() { echo "containers: $*" >&2; }

require() {
  local tool
  for tool in buildah podman runc mmdebstrap; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      log "$tool is missing: scripts/system-packages.sh installs it (apt-get install buildah podman runc mmdebstrap)"
      exit 1
    fi
  done
}

# podman's defaults do not run on machines like the project's CI: crun (its preferred runtime) refuses a host
# whose cgroup controllers are split between v1 and v2, so runc runs the containers; the default open-files and
# processes limits are above what such a host allows, so they are set to its own hard limits (at most 20000);
# there is no systemd to manage cgroups or take events. Containers share the host's network, so they reach
# services on 127.0.0.1.
configure() {
  mkdir -p "$DIR/storage" "$DIR/run" "$DIR/tmp"
  local nofile nproc
  nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] || [ "$nofile" -gt 20000 ] && nofile=20000
  [ "$nproc" = unlimited ] || [ "$nproc" -gt 20000 ] && nproc=20000
  cat > "$DIR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
netns = "host"
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$DIR/tmp"
CONF
  cat > "$DIR/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$DIR/storage"
runroot = "$DIR/run"
CONF
}

environment() {
  export CONTAINERS_CONF=$DIR/containers.conf CONTAINERS_STORAGE_CONF=$DIR/storage.conf
}

base() {
  require
  configure
  environment
  if [ -f "$BASE_STAMP" ] && podman image exists "$BASE"; then return 0; fi
  local t0; t0=$(date +%s)
  local work; work=$(mktemp -d "$DIR/tmp/base.XXXXXX")
  # minbase: the packages Debian marks required (dpkg, apt, passwd for useradd...) and the listed ones.
  if ! mmdebstrap --quiet "${BASE_OPTIONS[@]}" --include="$BASE_PACKAGES" bookworm "$work/rootfs.tar" \
    >"$DIR/base.log" 2>&1; then
    tail -n 40 "$DIR/base.log" >&2
    rm -rf "$work"
    log "mmdebstrap failed (the whole log: $DIR/base.log)"
    exit 1
  fi
  local container; container=$(buildah from scratch)
  buildah add --quiet "$container" "$work/rootfs.tar" / >/dev/null
  # pip inside a build trusts the certificate authorities this machine trusts (a proxy's own, where there is one).
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    buildah copy --quiet "$container" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
  fi
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd python3 "$container"
  buildah commit --quiet --rm --format docker "$container" "$BASE" >/dev/null
  rm -rf "$work"
  touch "$BASE_STAMP"
  log "made the stand-in base image $BASE in $(( $(date +%s) - t0 )) s"
}

# The image name for each Dockerfile.
image() {
  case "$1" in
    engine) echo localhost/aiops-engine:test ;;
    model-server) echo localhost/aiops-model-server:test ;;
    *) log "unknown image $1 (engine or model-server)"; exit 2 ;;
  esac
}

build() {
  local name=$1 file
  case "$name" in
    engine) file=Dockerfile ;;
    model-server) file=serving/Dockerfile ;;
    *) image "$name" ;;
  esac
  base
  local t0; t0=$(date +%s)
  # chroot isolation needs no container runtime inside the build, and the docker format keeps HEALTHCHECK. Layers
  # are cached, so an unchanged tree builds again in seconds.
  buildah bud --quiet --isolation chroot --pull=never --network host --format docker --layers --force-rm \
    -f "$file" -t "$(image "$name")" . >&2
  log "built $(image "$name") in $(( $(date +%s) - t0 )) s, $(size "$(image "$name")")"
  image "$name"
}

size() {
  podman image inspect --format '{{.Size}}' "$1" | awk '{printf "%.0f MB\n", $1 / 1e6}'
}

sizes() {
  configure
  environment
  local name
  for name in engine model-server; do
    if podman image exists "$(image "$name")"; then echo "$(image "$name") $(size "$(image "$name")")"; fi
  done
}

stop() {
  [ -f "$DIR/containers.conf" ] || return 0
  environment
  command -v podman >/dev/null 2>&1 && podman rm --all --force --time 0 >/dev/null 2>&1 || true
}

case "${1:-}" in
  base) base ;;
  build) build "${2:?usage: $0 build engine|model-server}" ;;
  image) image "${2:?usage: $0 image engine|model-server}" ;;
  sizes) sizes ;;
  stop) stop ;;
  env)
    configure
    echo "export CONTAINERS_CONF=$DIR/containers.conf CONTAINERS_STORAGE_CONF=$DIR/storage.conf AIOPS_TEST_CONTAINERS=1"
    ;;
  *) echo "usage: $0 base|build engine|model-server|image NAME|sizes|stop|env" >&2; exit 2 ;;
esac

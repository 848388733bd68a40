#!/usr/bin/env bash
# A private Kubernetes control plane for development and tests, without Docker or a kubelet:
#   scripts/services/kubernetes.sh build|start|stop|env|kubeconfig
# `build` compiles etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and helm from the Go module
# proxy into the git-ignored .bin/ (once per version; the Go build cache makes rebuilds quick). `start` runs etcd on
# 127.0.0.1:${AIOPS_ETCD_PORT:-52379}, the API server on https://127.0.0.1:${AIOPS_KUBE_PORT:-56443}, the controller
# manager, the scheduler and kwok, which plays the kubelet for one fake node so that pods reach Running.
set -euo pipefail
cd "$(dirname "$0")/../.."
KUBE_VERSION=${AIOPS_KUBE_VERSION:-v1.36.3}
ETCD_VERSION=${AIOPS_ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${AIOPS_KWOK_VERSION:-v0.8.0}
HELM_VERSION=${AIOPS_HELM_VERSION:-v3.22.0}
ETCD_PORT=${AIOPS_ETCD_PORT:-52379}
KUBE_PORT=${AIOPS_KUBE_PORT:-56443}
ROOT=$PWD
BIN=$ROOT/.bin
SRC=$BIN/src
RUN=$ROOT/.services/kubernetes
ADMIN_TOKEN_FILE=$RUN/admin.token
KUBECONFIG_FILE=$RUN/admin.kubeconfig

log() { echo "kubernetes: $*"; }

# The kubernetes module replaces its ~30 k8s.io/* staging modules with folders its module zip leaves out; a wrapper
# module points each of them at its published v0.X.Y instead, which is what a release build compiles anyway.
build_kubernetes() {
  local stamp=$BIN/.kubernetes-$KUBE_VERSION
  if [ -f "$stamp" ]; then return 0; fi
  local t0; t0=$(date +%s)
  local dir=$SRC/kubernetes-$KUBE_VERSION minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  local staging=v0.${KUBE_VERSION#v1.}
  mkdir -p "$dir"
  (
    cd "$dir"
    local gomod; gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    {
      echo "module local.aiops/kubernetes-build"
      echo
      echo "go $(sed -n 's/^go //p' "$gomod")"
      echo
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      echo
      echo "replace ("
      sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#\t\1 => \1 '"$staging"'#p' "$gomod"
      echo ")"
    } > go.mod
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBE_VERSION" \
      "k8s.io/kubernetes/cmd/kube-scheduler@$KUBE_VERSION"
    local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
    for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
      go build -ldflags "$ldflags" -o "$BIN/$cmd" "k8s.io/kubernetes/cmd/$cmd"
    done
  )
  touch "$stamp"
  log "built kube-apiserver, kube-controller-manager, kube-scheduler $KUBE_VERSION in $(( $(date +%s) - t0 )) s"
}

build_etcd() {
  local stamp=$BIN/.etcd-$ETCD_VERSION
  if [ -f "$stamp" ]; then return 0; fi
  local t0; t0=$(date +%s)
  local dir=$SRC/etcd-$ETCD_VERSION
  mkdir -p "$dir"
  (
    cd "$dir"
    printf 'module local.aiops/etcd-build\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    go build -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  )
  touch "$stamp"
  log "built etcd $ETCD_VERSION in $(( $(date +%s) - t0 )) s"
}

build_go_tool() {  # name package version
  local stamp=$BIN/.$1-$3
  if [ -f "$stamp" ]; then return 0; fi
  local t0; t0=$(date +%s)
  GOBIN=$BIN go install -ldflags "-s -w" "$2@$3"
  touch "$stamp"
  log "built $1 $3 in $(( $(date +%s) - t0 )) s"
}

build() {
  mkdir -p "$BIN"
  build_etcd
  build_kubernetes
  build_go_tool kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
  build_go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
}

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

launch() {  # name command...
  local name=$1; shift
  if running "$name"; then return 0; fi
  nohup "$@" >"$RUN/$name.log" 2>&1 &
  echo $! > "$RUN/$name.pid"
}

write_credentials() {
  mkdir -p "$RUN/pki"
  if [ ! -f "$ADMIN_TOKEN_FILE" ]; then
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$ADMIN_TOKEN_FILE"
  fi
  local token; token=$(cat "$ADMIN_TOKEN_FILE")
  echo "$token,aiops-test-admin,aiops-test-admin,system:masters" > "$RUN/tokens.csv"
  if [ ! -f "$RUN/pki/sa.key" ]; then
    openssl genrsa -out "$RUN/pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$RUN/pki/sa.key" -pubout -out "$RUN/pki/sa.pub" 2>/dev/null
  fi
  cat > "$KUBECONFIG_FILE" <<KC
apiVersion: v1
kind: Config
clusters:
- name: aiops-test
  cluster:
    server: https://127.0.0.1:$KUBE_PORT
    certificate-authority: $RUN/pki/apiserver.crt
users:
- name: aiops-test-admin
  user:
    token: $token
contexts:
- name: aiops-test
  context: {cluster: aiops-test, user: aiops-test-admin}
current-context: aiops-test
KC
}

wait_for() {  # what seconds command...
  local what=$1 seconds=$2; shift 2
  local i
  for i in $(seq 1 $((seconds * 4))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  log "$what did not become ready in ${seconds}s"
  return 1
}

api_ready() {
  curl -skf -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" "https://127.0.0.1:$KUBE_PORT/readyz" >/dev/null
}

fake_node() {
  curl -sk -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" -H 'Content-Type: application/json' \
    -X POST "https://127.0.0.1:$KUBE_PORT/api/v1/nodes" -d @- >/dev/null <<'NODE'
{"apiVersion": "v1", "kind": "Node",
 "metadata": {"name": "kwok-node-0", "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
              "labels": {"type": "kwok", "kubernetes.io/hostname": "kwok-node-0", "kubernetes.io/os": "linux"}},
 "spec": {"taints": []},
 "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "220"},
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "220"}}}
NODE
}

# The API server taints every new node "not-ready"; the node lifecycle controller would lift the taint, but it also
# expects kubelet heartbeats that a fake node does not send, so it stays off and the taint is lifted here.
untaint_node() {
  curl -skf -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" -H 'Content-Type: application/merge-patch+json' \
    -X PATCH "https://127.0.0.1:$KUBE_PORT/api/v1/nodes/kwok-node-0" -d '{"spec": {"taints": null}}' >/dev/null
}

node_ready() {
  curl -skf -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" "https://127.0.0.1:$KUBE_PORT/api/v1/nodes/kwok-node-0" \
    | grep -q '"type": "Ready"'
}

# kwok plays the kubelet by "stages": rules that move an object matching a selector to a next state. Three are
# enough here: a fake node reports Ready, a scheduled pod starts Running with its containers ready, and a pod being
# deleted goes away (no kubelet is there to confirm it).
write_stages() {
  cat > "$RUN/kwok-stages.yaml" <<'STAGES'
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: aiops-node-ready}
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - {key: '.status.conditions.[] | select( .type == "Ready" ) | .status', operator: NotIn, values: ['True']}
  next:
    statusTemplate: |
      conditions:
      - {type: Ready, status: "True", reason: KubeletReady, message: "kwok plays this node's kubelet",
         lastHeartbeatTime: {{ Now | Quote }}, lastTransitionTime: {{ Now | Quote }}}
      addresses:
      - {type: InternalIP, address: {{ NodeIP | Quote }}}
      - {type: Hostname, address: {{ .metadata.name | Quote }}}
      allocatable:
      {{ YAML .status.allocatable 1 }}
      capacity:
      {{ YAML .status.capacity 1 }}
      nodeInfo: {kubeletVersion: kwok, architecture: amd64, operatingSystem: linux}
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: aiops-pod-running}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: .metadata.deletionTimestamp, operator: DoesNotExist}
    - {key: .spec.nodeName, operator: Exists}
    - {key: .status.phase, operator: In, values: [Pending]}
  next:
    statusTemplate: |
      phase: Running
      startTime: {{ Now | Quote }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName false .metadata.uid .metadata.name .metadata.namespace | Quote }}
      conditions:
      {{ range $type := list "PodScheduled" "Initialized" "ContainersReady" "Ready" }}
      - {type: {{ $type }}, status: "True", lastTransitionTime: {{ Now | Quote }}}
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - {name: {{ .name | Quote }}, image: {{ .image | Quote }}, ready: true, started: true, restartCount: 0,
         state: {running: {startedAt: {{ Now | Quote }}}}}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: aiops-pod-delete}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: .metadata.deletionTimestamp, operator: Exists}
  next:
    finalizers: {empty: true}
    delete: true
STAGES
}

start() {
  build
  local t0; t0=$(date +%s)
  mkdir -p "$RUN"
  write_credentials
  launch etcd "$BIN/etcd" --name aiops-test --data-dir "$RUN/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "aiops-test=http://127.0.0.1:$((ETCD_PORT + 1))" --log-level warn \
    --quota-backend-bytes 1073741824 --unsafe-no-fsync
  wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  launch kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$KUBE_PORT" --cert-dir "$RUN/pki" \
    --service-cluster-ip-range 10.96.0.0/16 --authorization-mode Node,RBAC --token-auth-file "$RUN/tokens.csv" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$RUN/pki/sa.pub" --service-account-signing-key-file "$RUN/pki/sa.key" \
    --api-audiences https://kubernetes.default.svc.cluster.local --allow-privileged \
    --enable-priority-and-fairness=false --endpoint-reconciler-type none --v 0
  wait_for kube-apiserver 90 api_ready
  launch kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$KUBECONFIG_FILE" \
    --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
    --service-account-private-key-file "$RUN/pki/sa.key" --root-ca-file "$RUN/pki/apiserver.crt" \
    --controllers '*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route' \
    --concurrent-deployment-syncs 5 --v 0
  launch kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$KUBECONFIG_FILE" \
    --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false --v 0
  write_stages
  launch kwok "$BIN/kwok" --kubeconfig "$KUBECONFIG_FILE" --config "$RUN/kwok-stages.yaml" --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --node-ip 10.0.0.1 --cidr 10.0.0.0/16 --server-address 127.0.0.1:0
  fake_node
  wait_for "kwok node" 60 node_ready
  untaint_node
  log "control plane ready on https://127.0.0.1:$KUBE_PORT in $(( $(date +%s) - t0 )) s (kubeconfig $KUBECONFIG_FILE)"
}

stop() {
  local name
  for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    if running "$name"; then
      kill "$(cat "$RUN/$name.pid")" 2>/dev/null || true
      for _ in $(seq 1 40); do running "$name" || break; sleep 0.25; done
      running "$name" && kill -9 "$(cat "$RUN/$name.pid")" 2>/dev/null || true
    fi
    rm -f "$RUN/$name.pid"
  done
  rm -rf "$RUN/etcd"
}

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop) stop ;;
  kubeconfig) echo "$KUBECONFIG_FILE" ;;
  env) echo "export AIOPS_TEST_KUBECONFIG=$KUBECONFIG_FILE" ;;
  *) echo "usage: $0 build|start|stop|env|kubeconfig" >&2; exit 2 ;;
esac

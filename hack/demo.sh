#!/usr/bin/env bash
# make demo / make demo-down: pullsecret-injector end to end on a local cluster with a real node.
#
#   up    builds the webhook, its container image (hack/image.sh) and (first time only) the
#         Kubernetes, containerd and registry binaries; starts a local cluster with one node;
#         starts a private registry on 127.0.0.1 that requires a login; then shows the problem
#         (a pod of a private image fails with an authorization error although its namespace
#         has the registry secret) and the fix (the chart installed with helm, running as pods
#         pulled from that same private registry; the same pod created again runs).
#   down  stops the registry and the cluster, removes the demo's state.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL="$REPO/.local"
DEMO="$LOCAL/demo"
RELEASE=pullsecret-injector
RELEASE_NS=pullsecret-injector
REGISTRY_SCRIPT="$REPO/tests/controlplane/registry.sh"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "timed out waiting for $what" >&2; return 1; fi
    sleep 0.5
  done
}

pod_waiting_reason() { # pod_waiting_reason NS POD REASON-REGEX
  kubectl -n "$1" get pod "$2" -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' |
    grep -Eq "$3"
}

pod_running() {
  [ "$(kubectl -n "$1" get pod "$2" -o jsonpath='{.status.containerStatuses[0].state.running.startedAt}')" != "" ]
}

down() {
  step "Stopping the registry and the local cluster"
  [ -d "$DEMO/registry" ] && bash "$REGISTRY_SCRIPT" stop "$DEMO/registry"
  bash "$REPO/tests/controlplane/cluster.sh" down
  rm -rf "$DEMO"
  echo "demo removed"
}

up() {
  step "Building pullsecret-injector and its container image (no Docker daemon: hack/image.sh)"
  bash "$REPO/hack/image.sh" "$REPO/target/image/pullsecret-injector.tar"

  step "Starting a local cluster: kube-apiserver, etcd, controller manager, scheduler, one node"
  [ -d "$DEMO/registry" ] && bash "$REGISTRY_SCRIPT" stop "$DEMO/registry"
  bash "$REPO/tests/controlplane/cluster.sh" up
  export KUBECONFIG="$LOCAL/kubeconfig" PATH="$LOCAL/bin:$PATH"
  rm -rf "$DEMO" && mkdir -p "$DEMO"
  show kubectl get nodes

  step "A private registry on 127.0.0.1 (distribution, htpasswd: only user 'demo' may pull)"
  local password registry version
  password=$(openssl rand -hex 12)
  registry=$(bash "$REGISTRY_SCRIPT" start "$DEMO/registry" demo "$password")
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n 1)
  bash "$REGISTRY_SCRIPT" push "$DEMO/registry" "$REPO/target/image/pullsecret-injector.tar" \
    "$registry/pullsecret-injector:$version"
  bash "$REGISTRY_SCRIPT" push-busybox "$DEMO/registry" "$registry/shop/web:1.0"
  echo "registry $registry holds pullsecret-injector:$version and shop/web:1.0"

  step "Before: an application team with the registry secret in its namespace"
  show kubectl create namespace shop
  show kubectl -n shop create secret docker-registry shop-registry \
    --docker-server="$registry" --docker-username=demo --docker-password="<the password>" \
    --dry-run=client -o name
  kubectl -n shop create secret docker-registry shop-registry \
    --docker-server="$registry" --docker-username=demo --docker-password="$password" >/dev/null
  show kubectl -n shop run web --image="$registry/shop/web:1.0"
  wait_for 120 "the pull to fail" pod_waiting_reason shop web 'ErrImagePull|ImagePullBackOff'
  show kubectl -n shop get pod web
  echo "$ kubectl -n shop describe pod web   # the event says why:"
  kubectl -n shop get events --field-selector involvedObject.name=web,reason=Failed \
    -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' | grep -m1 'Failed to pull' | sed 's/^/    /'
  echo "The secret is right there, but nothing put it in the pod's imagePullSecrets."

  step "helm install: the chart runs as pods, pulling its own image from the private registry"
  show kubectl create namespace "$RELEASE_NS"
  kubectl -n "$RELEASE_NS" create secret docker-registry injector-pull \
    --docker-server="$registry" --docker-username=demo --docker-password="$password" >/dev/null
  show helm install "$RELEASE" "$REPO/charts/pullsecret-injector" --namespace "$RELEASE_NS" \
    --set image.repository="$registry/pullsecret-injector" --set image.tag="$version" \
    --set 'imagePullSecrets[0].name=injector-pull' --wait --timeout 3m
  show kubectl -n "$RELEASE_NS" get pods -o wide

  step "After: the same pod, created again with plain kubectl"
  kubectl -n shop delete pod web --wait=true >/dev/null
  show kubectl -n shop run web --image="$registry/shop/web:1.0"
  wait_for 120 "the pod to run" pod_running shop web
  show kubectl -n shop get pod web
  show kubectl -n shop get pod web -o \
    'custom-columns=POD:.metadata.name,PULL SECRETS:.spec.imagePullSecrets[*].name,INJECTED:.metadata.annotations.pullsecret-injector\.io/injected'

  step "A broken secret is never injected, and kubectl says so"
  printf '{"auths":{"%s":{"auth":"not base64!"}}}' "$registry" >"$DEMO/broken.json"
  kubectl -n shop create secret generic broken --type=kubernetes.io/dockerconfigjson \
    --from-file=.dockerconfigjson="$DEMO/broken.json" >/dev/null
  # The webhook's cache follows a watch: wait until a dry run shows it has the new secret.
  wait_for 60 "the webhook to see the broken secret" bash -c \
    "kubectl -n shop run probe --image='$registry/shop/web:1.0' --dry-run=server 2>&1 | grep -q broken"
  show kubectl -n shop run web-2 --image="$registry/shop/web:1.0"

  step "Done"
  cat <<MSG
Look around yourself:
  export KUBECONFIG=$LOCAL/kubeconfig PATH=$LOCAL/bin:\$PATH
  kubectl -n shop get pods
  kubectl -n shop describe pod web
  kubectl -n $RELEASE_NS logs deploy/$RELEASE
  kubectl -n shop create deployment api --image=$registry/shop/web:1.0
Clean up with: make demo-down
MSG
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac

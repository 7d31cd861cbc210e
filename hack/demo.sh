#!/usr/bin/env bash
# make demo / make demo-down: pullsecret-injector end to end on a local control plane.
#
#   up    builds the webhook and (first time only, ~11 min) the Kubernetes binaries, starts a
#         local kube-apiserver + etcd + kube-controller-manager, installs the Helm chart with its
#         webhook pointed at a local `serve` process, runs that process with the chart's own
#         ServiceAccount identity, then creates a registry secret and pods with plain kubectl
#         and shows what was injected.
#   down  stops the webhook process and the control plane, removes the demo's state.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL="$REPO/.local"
DEMO="$LOCAL/demo"
RELEASE=pullsecret-injector
RELEASE_NS=pullsecret-injector

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "timed out waiting for $what" >&2; return 1; fi
    sleep 0.2
  done
}

stop_webhook() {
  if [ -f "$DEMO/serve.pid" ]; then
    local pid; pid=$(cat "$DEMO/serve.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      wait_for 30 "the webhook to exit" bash -c "! kill -0 $pid" || kill -KILL "$pid"
    fi
    rm -f "$DEMO/serve.pid"
  fi
}

down() {
  step "Stopping the webhook process and the local control plane"
  stop_webhook
  bash "$REPO/tests/controlplane/cluster.sh" down
  rm -rf "$DEMO"
  echo "demo removed"
}

up() {
  step "Building pullsecret-injector (cargo build --release)"
  (cd "$REPO" && cargo build --release --locked)
  local bin="$REPO/target/release/pullsecret-injector"

  step "Starting a local control plane (kube-apiserver, etcd, kube-controller-manager)"
  stop_webhook
  bash "$REPO/tests/controlplane/cluster.sh" up
  export KUBECONFIG="$LOCAL/kubeconfig" PATH="$LOCAL/bin:$PATH"
  rm -rf "$DEMO" && mkdir -p "$DEMO"

  step "Making a development CA and a serving certificate for 127.0.0.1"
  "$bin" certs --out-dir "$DEMO/certs" --ip 127.0.0.1 --dns localhost
  local port admin_port ca_bundle
  port=$(free_port); admin_port=$(free_port)
  ca_bundle=$(base64 -w0 <"$DEMO/certs/ca.crt")

  step "helm install: the chart, with its webhook pointed at https://127.0.0.1:$port/mutate"
  echo "(there is no kubelet here, so the chart's Deployment never runs; the webhook runs as a local process)"
  helm install "$RELEASE" "$REPO/charts/pullsecret-injector" --namespace "$RELEASE_NS" --create-namespace \
    --set webhook.url="https://127.0.0.1:$port/mutate" --set webhook.caBundle="$ca_bundle" \
    --set replicaCount=1
  kubectl get mutatingwebhookconfigurations

  step "Running 'pullsecret-injector serve' with the chart's ServiceAccount identity"
  local token server
  token=$(kubectl -n "$RELEASE_NS" create token "$RELEASE" --duration=2h)
  server=$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')
  kubectl config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$DEMO/cluster-ca.crt"
  KUBECONFIG="$DEMO/webhook.kubeconfig" kubectl config set-cluster local --server="$server" \
    --certificate-authority="$DEMO/cluster-ca.crt" --embed-certs >/dev/null
  KUBECONFIG="$DEMO/webhook.kubeconfig" kubectl config set-credentials webhook --token="$token" >/dev/null
  KUBECONFIG="$DEMO/webhook.kubeconfig" kubectl config set-context webhook --cluster=local --user=webhook >/dev/null
  KUBECONFIG="$DEMO/webhook.kubeconfig" kubectl config use-context webhook >/dev/null
  KUBECONFIG="$DEMO/webhook.kubeconfig" setsid "$bin" serve \
    --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin_port" \
    --tls-cert-file "$DEMO/certs/tls.crt" --tls-key-file "$DEMO/certs/tls.key" \
    --shutdown-delay 1s >"$DEMO/serve.log" 2>&1 &
  echo $! >"$DEMO/serve.pid"
  wait_for 60 "the webhook to become ready" curl -fsS "http://127.0.0.1:$admin_port/readyz"
  echo "webhook ready: https://127.0.0.1:$port/mutate (admin: http://127.0.0.1:$admin_port, log: $DEMO/serve.log)"

  step "An application team: a namespace, a registry secret and pods, with plain kubectl"
  kubectl create namespace shop
  kubectl -n shop create secret docker-registry registry-5000 \
    --docker-server=registry.example.com:5000 --docker-username=demo --docker-password=demo-password
  kubectl -n shop create secret docker-registry dockerhub \
    --docker-server=https://index.docker.io/v1/ --docker-username=demo --docker-password=demo-password
  printf '{"auths":{"ghcr.io":{"auth":"not base64!"}}}' >"$DEMO/broken.json"
  kubectl -n shop create secret generic broken --type=kubernetes.io/dockerconfigjson \
    --from-file=.dockerconfigjson="$DEMO/broken.json"
  wait_for 20 "the webhook to see the secrets" bash -c \
    "curl -fsS http://127.0.0.1:$admin_port/metrics | grep -q '^pullsecret_injector_cached_secrets 3'"
  echo '$ kubectl -n shop run web --image=registry.example.com:5000/team/web:1.0'
  kubectl -n shop run web --image=registry.example.com:5000/team/web:1.0 2>&1
  echo '$ kubectl -n shop run proxy --image=nginx:1.25'
  kubectl -n shop run proxy --image=nginx:1.25 2>&1
  echo '$ kubectl -n shop run report --image=ghcr.io/shop/report:7'
  kubectl -n shop run report --image=ghcr.io/shop/report:7 2>&1

  step "What the pods got"
  kubectl -n shop get pods -o custom-columns='POD:.metadata.name,IMAGE:.spec.containers[0].image,PULL SECRETS:.spec.imagePullSecrets[*].name,INJECTED:.metadata.annotations.pullsecret-injector\.io/injected'

  step "Done"
  cat <<MSG
Try it yourself:
  export KUBECONFIG=$LOCAL/kubeconfig PATH=$LOCAL/bin:\$PATH
  kubectl -n shop create deployment api --image=registry.example.com:5000/team/api:2
  kubectl -n shop get pods -o yaml | grep -A2 imagePullSecrets
  curl -s http://127.0.0.1:$admin_port/metrics | grep pullsecret_injector_reviews
Clean up with: make demo-down
MSG
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Tests of the Helm chart charts/pullsecret-injector.
#
#   1. helm lint --strict: default values, each certificate mode, the HA profile.
#   2. The schema rejects a misspelt key and wrong types; the chart's own checks fail clearly.
#   3. helm template for each certificate mode and the HA profile, with assertions on the
#      rendered webhook, Deployment, RBAC and certificates; then every document the apiserver
#      knows is validated with `kubectl apply --dry-run=server` (cert-manager and
#      ServiceMonitor kinds, whose CRDs are not installed, are checked here instead).
#   4. helm install (webhook.url pointing at a port nobody serves), assertions on the live
#      objects, a pod created in a namespace the webhook covers (failurePolicy Ignore admits
#      it), helm upgrade keeping the CA and serving certificate, helm uninstall.
#
# Needs a cluster for 3's validation and for 4: KUBECONFIG (as in .local/cluster.env, which is
# sourced when KUBECONFIG is unset). CHART_TEST_OFFLINE=1 skips those parts.
# Tools: helm, kubectl (from $HELM/$KUBECTL, $CLUSTER_BIN_DIR, .local/bin, the control-plane
# cache or PATH), jq, openssl.
#
# Safe next to other tests on the same cluster: every name carries a random id, and the
# (cluster-scoped) MutatingWebhookConfiguration it installs has failurePolicy Ignore and a
# namespaceSelector that requires a label only this run's probe namespace carries.

# The jq programs in single quotes use jq's own $variables.
# shellcheck disable=SC2016
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
CHART="$REPO_ROOT/charts/pullsecret-injector"
OFFLINE=${CHART_TEST_OFFLINE:-0}

ID=$(printf '%04x%04x' "$RANDOM" "$RANDOM")
PREFIX="pullsecret-injector-ct-$ID"      # contains the chart name, so fullname == release name
NEVER_LABEL="chart-test.pullsecret-injector.io/run-$ID"
WEBHOOK_URL="https://127.0.0.1:${CHART_TEST_WEBHOOK_PORT:-18443}/mutate"
RENDER_LABEL="chart-test.pullsecret-injector.io/render"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pullsecret-injector-chart-test.XXXXXX")
PASSED=0
FAILED=0
SKIPPED=0
FAILURES=()
CREATED_NAMESPACES=()
INSTALLED_RELEASE=""

say() { printf '%s\n' "$*"; }
pass() { PASSED=$((PASSED + 1)); say "PASS  $1"; }
fail() {
  FAILED=$((FAILED + 1))
  FAILURES+=("$1")
  say "FAIL  $1"
  shift
  local line
  for line in "$@"; do say "      $line"; done
}
skip() { SKIPPED=$((SKIPPED + 1)); say "SKIP  $1${2:+ ($2)}"; }

# attempt NAME COMMAND...: passes when the command succeeds, shows its output's tail
# otherwise; returns the outcome (for `if attempt ...`). `check` is the same for plain use.
attempt() {
  local name=$1; shift
  if "$@" >"$WORK/last.log" 2>&1; then
    pass "$name"
  else
    fail "$name" "command: $*" "--- last output lines ---"
    tail -n 15 "$WORK/last.log" | sed 's/^/      | /'
    return 1
  fi
}
check() { attempt "$@" || true; }

# check_rbac_exact NAMESPACE SERVICEACCOUNT: what the ServiceAccount may do on resources
# (`kubectl auth can-i --list`), beyond what every ServiceAccount may (the namespace's
# `default` one, which has no bindings, is the baseline), is exactly get/list/watch on secrets,
# namespaces and the two CRDs; and real calls outside that are denied.
rbac_rows() {
  "$KUBECTL" auth can-i --list --as "$1" -n default | tail -n +2 | grep -E '^[^ ]' |
    sed -E 's/^([^ ]+) .*(\[[^]]*\]) *$/\1 \2/' | sort -u
}
check_rbac_exact() {
  local ns=$1 sa=$2 as granted baseline extra
  as="system:serviceaccount:$ns:$sa"
  if ! granted=$(rbac_rows "$as" 2>"$WORK/last.log") ||
    ! baseline=$(rbac_rows "system:serviceaccount:$ns:default" 2>>"$WORK/last.log"); then
    fail "RBAC: kubectl auth can-i --list" "$(tail -n 3 "$WORK/last.log")"
    return
  fi
  extra=$(comm -23 <(printf '%s\n' "$granted") <(printf '%s\n' "$baseline") | paste -sd ';' -)
  local expected="clusterpullsecrets.pullsecret-injector.io [get list watch];namespaces [get list watch];pullsecretrules.pullsecret-injector.io [get list watch];secrets [get list watch]"
  if [ "$extra" = "$expected" ]; then
    pass "RBAC: can-i --list adds exactly get/list/watch on secrets, namespaces and the two CRDs"
  else
    fail "RBAC: can-i --list adds exactly get/list/watch on secrets, namespaces and the two CRDs" \
      "beyond a plain ServiceAccount: ${extra:-<nothing>}"
  fi
  check "RBAC: listing secrets in all namespaces is allowed" \
    "$KUBECTL" get secrets -A --as "$as" -o name
  check_fails "RBAC: reading pods is denied" 'Forbidden|forbidden' \
    "$KUBECTL" get pods -A --as "$as"
  check_fails "RBAC: reading configmaps is denied" 'Forbidden|forbidden' \
    "$KUBECTL" get configmaps -n "$ns" --as "$as"
  check_fails "RBAC: creating a secret is denied" 'Forbidden|forbidden' \
    "$KUBECTL" create secret generic "rbac-probe-$ID" -n "$ns" --from-literal=a=b --as "$as"
  check_fails "RBAC: labelling a namespace is denied" 'Forbidden|forbidden' \
    "$KUBECTL" label namespace "$ns" "rbac-probe-$ID=x" --as "$as"
  check_fails "RBAC: patching a ServiceAccount is denied" 'Forbidden|forbidden' \
    "$KUBECTL" patch serviceaccount "$sa" -n "$ns" -p '{"imagePullSecrets":[{"name":"x"}]}' --as "$as"
  check_fails "RBAC: reading its own webhook configuration is denied" 'Forbidden|forbidden' \
    "$KUBECTL" get mutatingwebhookconfigurations --as "$as"
}

# check_fails NAME PATTERN COMMAND...: passes when the command fails and its output matches
# the (grep -E) pattern, i.e. it failed for the expected reason.
check_fails() {
  local name=$1 pattern=$2; shift 2
  if "$@" >"$WORK/last.log" 2>&1; then
    fail "$name" "expected a failure, but it succeeded: $*"
  elif grep -Eq -- "$pattern" "$WORK/last.log"; then
    pass "$name"
  else
    fail "$name" "failed, but the output does not match /$pattern/: $*" "--- last output lines ---"
    tail -n 10 "$WORK/last.log" | sed 's/^/      | /'
  fi
}

# check_jq NAME FILE FILTER [jq args...]: passes when FILTER yields true on FILE.
check_jq() {
  local name=$1 file=$2 filter=$3; shift 3
  if jq -e "$@" "$filter" "$file" >/dev/null 2>"$WORK/jq.err"; then
    pass "$name"
  else
    fail "$name" "not true: $filter" "$(head -c 400 "$WORK/jq.err")"
  fi
}

find_tool() {
  local name=$1 override=$2 candidate
  if [ -n "$override" ]; then
    printf '%s' "$override"
    return 0
  fi
  for candidate in \
    "${CLUSTER_BIN_DIR:+$CLUSTER_BIN_DIR/$name}" \
    "$REPO_ROOT/.local/bin/$name" \
    "${PULLSECRET_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pullsecret-injector}"/*/bin/"$name" \
    "$(command -v "$name" 2>/dev/null || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      printf '%s' "$candidate"
      return 0
    fi
  done
  return 1
}

cleanup() {
  local rc=$? ns
  set +e
  if [ -n "$INSTALLED_RELEASE" ]; then
    "$HELM" uninstall "$INSTALLED_RELEASE" -n "$INSTALLED_RELEASE" --wait=false >/dev/null 2>&1
    # Cluster-scoped leftovers of an interrupted run, by their exact names.
    "$KUBECTL" delete mutatingwebhookconfiguration,clusterrole,clusterrolebinding \
      "$INSTALLED_RELEASE" --ignore-not-found >/dev/null 2>&1
    "$KUBECTL" delete clusterrole,clusterrolebinding \
      "$INSTALLED_RELEASE-controller" --ignore-not-found >/dev/null 2>&1
  fi
  for ns in ${CREATED_NAMESPACES[@]+"${CREATED_NAMESPACES[@]}"}; do
    "$KUBECTL" delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1
  done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Tools and cluster

if [ -z "${KUBECONFIG:-}" ] && [ -f "$REPO_ROOT/.local/cluster.env" ]; then
  # shellcheck disable=SC1091
  . "$REPO_ROOT/.local/cluster.env"
fi

HELM=$(find_tool helm "${HELM:-}") || { say "error: helm not found (set HELM or run tests/controlplane/build.sh)"; exit 1; }
KUBECTL=$(find_tool kubectl "${KUBECTL:-}") || { say "error: kubectl not found (set KUBECTL or run tests/controlplane/build.sh)"; exit 1; }
for tool in jq openssl; do
  command -v "$tool" >/dev/null || { say "error: $tool is required"; exit 1; }
done
say "helm:    $HELM ($("$HELM" version --template '{{.Version}}' 2>/dev/null || echo '?'))"
say "kubectl: $KUBECTL"

CLUSTER=0
if [ "$OFFLINE" != 1 ]; then
  if [ -n "${KUBECONFIG:-}" ] && [ "$("$KUBECTL" get --raw /readyz 2>/dev/null)" = ok ]; then
    CLUSTER=1
    KUBE_VERSION=$("$KUBECTL" version -o json 2>/dev/null | jq -r '.serverVersion.gitVersion // empty')
    say "cluster: ${KUBECONFIG} (Kubernetes ${KUBE_VERSION:-?})"
    if "$KUBECTL" get crd pullsecretrules.pullsecret-injector.io clusterpullsecrets.pullsecret-injector.io >/dev/null 2>&1; then
      CRDS_INSTALLED=1
    fi
  else
    fail "cluster reachable" "no ready apiserver at KUBECONFIG='${KUBECONFIG:-}'" \
      "start one with: bash tests/controlplane/cluster.sh up && . .local/cluster.env" \
      "or run only the offline checks with CHART_TEST_OFFLINE=1"
  fi
else
  say "cluster: none (CHART_TEST_OFFLINE=1)"
fi
# A helm built without release ldflags assumes Kubernetes v1.20, below the chart's kubeVersion;
# render for the cluster's version (or the control plane's default) instead.
# shellcheck source=../kubernetes.sh
. "$SCRIPT_DIR/../kubernetes.sh"
KUBE_VERSION=${KUBE_VERSION:-$K8S_VERSION}
KV=(--kube-version "$KUBE_VERSION")
READ_ONLY_RULES='[{apiGroups: [""], resources: ["secrets", "namespaces"], verbs: ["get", "list", "watch"]},
  {apiGroups: ["pullsecret-injector.io"], resources: ["pullsecretrules", "clusterpullsecrets"], verbs: ["get", "list", "watch"]}]'
# Server-side validation of PullSecretRules and ClusterPullSecrets needs the CRDs installed.
CRDS_INSTALLED=0

# ---------------------------------------------------------------------------------------------
# Helpers for rendered output

# Converts YAML documents (stdin) to a JSON array, without a server: `kubectl label --local`
# reads any kind. The label it has to add is removed again.
to_json_array() {
  "$KUBECTL" label --local -f - "$RENDER_LABEL=1" -o json |
    jq -s --arg l "$RENDER_LABEL" 'map(if .kind == "List" then .items[] else . end)
      | map(del(.metadata.labels[$l]))'
}

# render NAME RELEASE NAMESPACE [helm args...]: helm template into $WORK/NAME.yaml and .json.
render() {
  local name=$1 release=$2 namespace=$3; shift 3
  "$HELM" template "$release" "$CHART" -n "$namespace" "${KV[@]}" "$@" >"$WORK/$name.yaml" &&
    to_json_array <"$WORK/$name.yaml" >"$WORK/$name.json"
}

# The built-in webhook settings every render must have. Args: JSON file, release namespace.
check_webhook_settings() {
  local label=$1 file=$2 namespace=$3
  local mwc='(.[] | select(.kind == "MutatingWebhookConfiguration"))'
  check_jq "$label: one MutatingWebhookConfiguration with one webhook" "$file" \
    "[.[] | select(.kind == \"MutatingWebhookConfiguration\")] | length == 1 and (.[0].webhooks | length == 1)"
  check_jq "$label: pods, CREATE only, core/v1, namespaced" "$file" \
    "$mwc.webhooks[0].rules == [{operations: [\"CREATE\"], apiGroups: [\"\"], apiVersions: [\"v1\"], resources: [\"pods\"], scope: \"Namespaced\"}]"
  check_jq "$label: admissionReviewVersions [v1], sideEffects None, matchPolicy Equivalent, reinvocationPolicy IfNeeded" "$file" \
    "$mwc.webhooks[0] | .admissionReviewVersions == [\"v1\"] and .sideEffects == \"None\" and .matchPolicy == \"Equivalent\" and .reinvocationPolicy == \"IfNeeded\""
  check_jq "$label: namespaceSelector excludes kube-system and the release namespace" "$file" \
    "$mwc.webhooks[0].namespaceSelector.matchExpressions | any(.key == \"kubernetes.io/metadata.name\" and .operator == \"NotIn\" and (.values | index(\"kube-system\") != null and index(\$ns) != null))" \
    --arg ns "$namespace"
  check_jq "$label: namespaceSelector excludes opted-out namespaces" "$file" \
    "$mwc.webhooks[0].namespaceSelector.matchExpressions | any(. == {key: \"pullsecret-injector.io/inject\", operator: \"NotIn\", values: [\"false\"]})"
  check_jq "$label: objectSelector excludes opted-out pods" "$file" \
    "$mwc.webhooks[0].objectSelector.matchExpressions | any(. == {key: \"pullsecret-injector.io/inject\", operator: \"NotIn\", values: [\"false\"]})"
}

# Deployment properties that hold for every render. Args: label, JSON file.
check_deployment_settings() {
  local label=$1 file=$2
  local dep='(.[] | select(.kind == "Deployment"))'
  local ctr="$dep.spec.template.spec.containers[0]"
  check_jq "$label: rolling update never below the ready count (maxUnavailable 0, maxSurge 1)" "$file" \
    "$dep.spec.strategy == {type: \"RollingUpdate\", rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}"
  check_jq "$label: pod runs as non-root 65532 with RuntimeDefault seccomp" "$file" \
    "$dep.spec.template.spec.securityContext | .runAsNonRoot == true and .runAsUser == 65532 and .runAsGroup == 65532 and .seccompProfile.type == \"RuntimeDefault\""
  check_jq "$label: container read-only, no privilege escalation, drops ALL" "$file" \
    "$ctr.securityContext | .readOnlyRootFilesystem == true and .allowPrivilegeEscalation == false and .capabilities.drop == [\"ALL\"]"
  check_jq "$label: probes on /livez and /readyz of the admin port" "$file" \
    "$ctr | .livenessProbe.httpGet == {path: \"/livez\", port: \"admin\"} and .readinessProbe.httpGet == {path: \"/readyz\", port: \"admin\"}"
  check_jq "$label: resources requests and limits set" "$file" \
    "$ctr.resources | (.requests | length > 0) and (.limits | length > 0)"
  check_jq "$label: TLS Secret mounted as a directory (no subPath)" "$file" \
    "$ctr.volumeMounts | any(.mountPath == \"/etc/pullsecret-injector/tls\" and .subPath == null)"
  check_jq "$label: terminationGracePeriodSeconds exceeds shutdownDelay + drainTimeout" "$file" \
    "$dep.spec.template.spec | .terminationGracePeriodSeconds > 25 and .automountServiceAccountToken == true"
  check_jq "$label: ClusterRole is get/list/watch on secrets, namespaces and the CRDs only" "$file" \
    "[.[] | select(.kind == \"ClusterRole\" and (.metadata.name | endswith(\"-controller\") | not))][0].rules == $READ_ONLY_RULES"
}

# RBAC and settings of a render without the controller: read-only. Args: label, JSON file.
check_controller_disabled() {
  local label=$1 file=$2
  check_jq "$label: controller off: one read-only ClusterRole, no Role, no write verb anywhere" "$file" \
    '([.[] | select(.kind == "ClusterRole")] | length == 1) and ([.[] | select(.kind == "Role")] | length == 0)
     and ([.[] | select(.kind == "ClusterRole" or .kind == "Role") | .rules[].verbs[]] - ["get", "list", "watch"] | length == 0)'
  check_jq "$label: controller off: PULLSECRET_INJECTOR_ENABLE_CONTROLLER=false, own namespace from the pod" "$file" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec.containers[0].env
     | any(.name == "PULLSECRET_INJECTOR_ENABLE_CONTROLLER" and .value == "false")
       and any(.name == "PULLSECRET_INJECTOR_OWN_NAMESPACE" and .valueFrom.fieldRef.fieldPath == "metadata.namespace")'
}

# The Secret name the Deployment mounts.
mounted_secret() {
  jq -r '.[] | select(.kind == "Deployment") | .spec.template.spec.volumes[] | select(.name == "tls") | .secret.secretName' "$1"
}

# server_validate NAME JSON-FILE NAMESPACE: server-side dry-run of every document whose kind
# the apiserver knows (everything but cert-manager and Prometheus-operator kinds).
server_validate() {
  local name=$1 file=$2 namespace=$3
  if [ "$CLUSTER" != 1 ]; then
    skip "$name: server-side dry-run" "no cluster"
    return 0
  fi
  local skip_groups='cert-manager\.io|monitoring\.coreos\.com'
  [ "$CRDS_INSTALLED" = 1 ] || skip_groups="$skip_groups|pullsecret-injector\.io"
  jq --arg skip "^($skip_groups)/" '{apiVersion: "v1", kind: "List",
       items: [.[] | select(.apiVersion | test($skip) | not)]}' \
    "$file" >"$WORK/$name.server.json"
  check "$name: kubectl apply --dry-run=server accepts $(jq '.items | length' "$WORK/$name.server.json") objects" \
    "$KUBECTL" apply --dry-run=server --validate=strict -f "$WORK/$name.server.json"
}

# ---------------------------------------------------------------------------------------------
say ""
say "== helm lint --strict"

# A real CA certificate for certificates.mode=external (its key is not needed).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=chart-test-external-ca" -keyout "$WORK/external-ca.key" -out "$WORK/external-ca.crt" \
  >"$WORK/openssl.log" 2>&1 || { cat "$WORK/openssl.log"; say "error: openssl could not make a CA"; exit 1; }
EXTERNAL_CA=$(openssl base64 -A <"$WORK/external-ca.crt")
check "lint: default values" "$HELM" lint --strict "$CHART" "${KV[@]}"
check "lint: certificates.mode=certManager" "$HELM" lint --strict "$CHART" "${KV[@]}" \
  --set certificates.mode=certManager
check "lint: certificates.mode=external" "$HELM" lint --strict "$CHART" "${KV[@]}" \
  --set certificates.mode=external --set certificates.external.secretName=my-tls \
  --set certificates.external.caBundle="$EXTERNAL_CA"
check "lint: ci/ha-values.yaml" "$HELM" lint --strict "$CHART" "${KV[@]}" -f "$CHART/ci/ha-values.yaml"
check "lint: every optional object enabled" "$HELM" lint --strict "$CHART" "${KV[@]}" \
  --set networkPolicy.enabled=true --set metrics.serviceMonitor.enabled=true \
  --set webhook.url="$WEBHOOK_URL" --set securityContext.fsGroup=65532

# ---------------------------------------------------------------------------------------------
say ""
say "== values checks (schema and the chart's own validation)"

T=("$HELM" template schema-check "$CHART" -n schema-check "${KV[@]}")
check_fails "schema rejects a misspelt key (replicaCont=2)" "replicaCont" "${T[@]}" --set replicaCont=2
check_fails "schema rejects a misspelt nested key (webhook.failurePolcy)" "failurePolcy" \
  "${T[@]}" --set webhook.failurePolicy=Ignore --set webhook.failurePolcy=Fail
check_fails "schema rejects a wrong type (replicaCount=two)" "replicaCount" "${T[@]}" --set replicaCount=two
check_fails "schema rejects a wrong type (webhook.timeoutSeconds as a string)" "timeoutSeconds" \
  "${T[@]}" --set-string webhook.timeoutSeconds=5
check_fails "schema rejects timeoutSeconds above 30" "timeoutSeconds" "${T[@]}" --set webhook.timeoutSeconds=31
check_fails "schema rejects an unknown failurePolicy" "failurePolicy" "${T[@]}" --set webhook.failurePolicy=Sometimes
check_fails "schema rejects a non-https webhook.url" "url" "${T[@]}" --set webhook.url=http://127.0.0.1:8443/mutate
check_fails "schema rejects an unknown PullSecretRule mode" "mode" "${T[@]}" \
  --set-json 'pullSecretRules=[{"name":"r","namespace":"n","registries":["quay.io"],"secrets":["s"],"mode":"sometimes"}]'
check_fails "schema rejects a misspelt ClusterPullSecret key (targetNmae)" "targetNmae" "${T[@]}" \
  --set-json 'clusterPullSecrets=[{"name":"c","source":{"namespace":"n","name":"s"},"targetNmae":"x"}]'
check_fails "schema rejects a ClusterPullSecret without a source" "source" "${T[@]}" \
  --set-json 'clusterPullSecrets=[{"name":"c"}]'
check_fails "schema rejects a misspelt controller key (controller.enable)" "enable" "${T[@]}" \
  --set controller.enable=true
check_fails "unknown certificates.mode fails with a clear message" \
  "certificates.mode must be one of helm, certManager or external" \
  "${T[@]}" --skip-schema-validation --set certificates.mode=selfSigned
check_fails "external mode without a Secret name fails with a clear message" \
  "needs certificates.external.secretName" "${T[@]}" --set certificates.mode=external
check_fails "external mode without a CA bundle fails with a clear message" \
  "needs certificates.external.caBundle" "${T[@]}" --set certificates.mode=external \
  --set certificates.external.secretName=my-tls
check_fails "terminationGracePeriodSeconds not above shutdownDelay + drainTimeout fails" \
  "must exceed shutdownDelay \\+ drainTimeout" "${T[@]}" --set drainTimeout=1m

# ---------------------------------------------------------------------------------------------
say ""
say "== rendered manifests (helm template), validated by the apiserver"

DRY_NS="$PREFIX-dry"
if [ "$CLUSTER" = 1 ]; then
  if "$KUBECTL" create namespace "$DRY_NS" >"$WORK/last.log" 2>&1; then
    CREATED_NAMESPACES+=("$DRY_NS")
  else
    fail "create namespace $DRY_NS for the dry-run" "$(tail -n 3 "$WORK/last.log")"
  fi
fi

# helm mode
REL="$PREFIX-h"
if attempt "render: certificates.mode=helm" render helm "$REL" "$DRY_NS"; then
  F="$WORK/helm.json"
  check_webhook_settings "helm mode" "$F" "$DRY_NS"
  check_deployment_settings "helm mode" "$F"
  check_jq "helm mode: caBundle is the CA stored in the mounted Secret" "$F" \
    '(.[] | select(.kind == "Secret" and .metadata.name == $s) | .data["ca.crt"]) as $ca
     | $ca != null and (.[] | select(.kind == "MutatingWebhookConfiguration") | .webhooks[0].clientConfig.caBundle) == $ca' \
    --arg s "$(mounted_secret "$F")"
  check_jq "helm mode: clientConfig is the Service on 443, path /mutate" "$F" \
    '(.[] | select(.kind == "MutatingWebhookConfiguration") | .webhooks[0].clientConfig.service) == {namespace: $ns, name: $rel, path: "/mutate", port: 443}' \
    --arg ns "$DRY_NS" --arg rel "$REL"
  check_jq "helm mode: failurePolicy Ignore and timeoutSeconds 5 by default" "$F" \
    '.[] | select(.kind == "MutatingWebhookConfiguration") | .webhooks[0] | .failurePolicy == "Ignore" and .timeoutSeconds == 5'
  check_jq "helm mode: Service 443 -> webhook port, PDB minAvailable 1" "$F" \
    '(.[] | select(.kind == "Service" and .metadata.name == $rel) | .spec.ports[0] | .port == 443 and .targetPort == "webhook")
     and (.[] | select(.kind == "PodDisruptionBudget") | .spec.minAvailable == 1)' --arg rel "$REL"
  check_jq "helm mode: soft hostname anti-affinity and ScheduleAnyway zone spread" "$F" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec
     | (.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey == "kubernetes.io/hostname")
       and (.topologySpreadConstraints[0].whenUnsatisfiable == "ScheduleAnyway")'
  # The generated certificate: ECDSA P-256, signed by the CA, for the four Service names.
  jq -r '.[] | select(.kind == "Secret") | .data["ca.crt"]' "$F" | openssl base64 -d -A >"$WORK/ca.crt"
  jq -r '.[] | select(.kind == "Secret") | .data["tls.crt"]' "$F" | openssl base64 -d -A >"$WORK/tls.crt"
  check "helm mode: serving certificate verifies against the CA" \
    openssl verify -CAfile "$WORK/ca.crt" "$WORK/tls.crt"
  openssl x509 -in "$WORK/tls.crt" -noout -text >"$WORK/tls.txt" 2>&1 || true
  sans="DNS:$REL, DNS:$REL.$DRY_NS, DNS:$REL.$DRY_NS.svc, DNS:$REL.$DRY_NS.svc.cluster.local"
  check "helm mode: serving certificate names $REL{,.$DRY_NS{,.svc{,.cluster.local}}}" \
    grep -qF "$sans" "$WORK/tls.txt"
  check "helm mode: serving key is ECDSA P-256" grep -q "prime256v1" "$WORK/tls.txt"
  check_controller_disabled "helm mode" "$F"
  server_validate "helm mode" "$F" "$DRY_NS"
fi

# The controller, rules and cluster credentials from values
REL="$PREFIX-m"
if attempt "render: controller.enabled with pullSecretRules and clusterPullSecrets" render mappings "$REL" "$DRY_NS" \
  --set controller.enabled=true \
  --set-json "pullSecretRules=[{\"name\":\"mirror-only\",\"namespace\":\"$DRY_NS\",\"registries\":[\"registry.example.com\"],\"secrets\":[\"mirror\"],\"mode\":\"exclusive\"}]" \
  --set-json "clusterPullSecrets=[{\"name\":\"$REL-corp\",\"source\":{\"namespace\":\"$DRY_NS\",\"name\":\"corp\"},\"namespaceSelector\":{\"matchLabels\":{\"corp\":\"true\"}},\"targetName\":\"corp-pull\"}]"; then
  F="$WORK/mappings.json"
  check_deployment_settings "controller enabled" "$F"
  check_jq "controller enabled: -controller ClusterRole writes secrets, finalizer/status, events; nothing more" "$F" \
    '.[] | select(.kind == "ClusterRole" and .metadata.name == ($rel + "-controller")) | .rules == [
       {apiGroups: [""], resources: ["secrets"], verbs: ["create", "update", "patch", "delete"]},
       {apiGroups: ["pullsecret-injector.io"], resources: ["clusterpullsecrets"], verbs: ["update", "patch"]},
       {apiGroups: ["pullsecret-injector.io"], resources: ["clusterpullsecrets/status"], verbs: ["update", "patch"]},
       {apiGroups: ["events.k8s.io"], resources: ["events"], verbs: ["create", "patch"]}]' --arg rel "$REL"
  check_jq "controller enabled: Role on leases in the release namespace only, bound to the ServiceAccount" "$F" \
    '(.[] | select(.kind == "Role") | .metadata.namespace == $ns
        and .rules == [{apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["get", "create", "update"]}])
     and (.[] | select(.kind == "RoleBinding") | .roleRef.name == ($rel + "-lease") and .subjects[0].name == $rel)
     and ([.[] | select(.kind == "ClusterRoleBinding")] | length == 2)' --arg ns "$DRY_NS" --arg rel "$REL"
  check_jq "controller enabled: env enables the controller, Lease named after the release, identity = pod name" "$F" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec.containers[0].env
     | any(.name == "PULLSECRET_INJECTOR_ENABLE_CONTROLLER" and .value == "true")
       and any(.name == "PULLSECRET_INJECTOR_LEASE_NAME" and .value == ($rel + "-controller"))
       and any(.name == "PULLSECRET_INJECTOR_LEASE_IDENTITY" and .valueFrom.fieldRef.fieldPath == "metadata.name")
       and any(.name == "PULLSECRET_INJECTOR_LEASE_DURATION" and .value == "15s")' --arg rel "$REL"
  check_jq "controller enabled: the PullSecretRule and ClusterPullSecret from values" "$F" \
    '(.[] | select(.kind == "PullSecretRule") | .metadata.namespace == $ns
        and .spec == {registries: ["registry.example.com"], secrets: ["mirror"], mode: "exclusive"})
     and (.[] | select(.kind == "ClusterPullSecret") | .metadata.name == ($rel + "-corp")
        and .spec == {source: {namespace: $ns, name: "corp"}, namespaceSelector: {matchLabels: {corp: "true"}}, targetName: "corp-pull"})' \
    --arg ns "$DRY_NS" --arg rel "$REL"
  server_validate "controller enabled" "$F" "$DRY_NS"
fi

# certManager mode
REL="$PREFIX-c"
if attempt "render: certificates.mode=certManager" render cm "$REL" "$DRY_NS" --set certificates.mode=certManager; then
  F="$WORK/cm.json"
  check_webhook_settings "certManager mode" "$F" "$DRY_NS"
  check_deployment_settings "certManager mode" "$F"
  check_jq "certManager mode: no chart-made Secret and no caBundle; inject-ca-from names the serving Certificate" "$F" \
    '([.[] | select(.kind == "Secret")] | length == 0)
     and (.[] | select(.kind == "MutatingWebhookConfiguration")
          | .webhooks[0].clientConfig.caBundle == null
            and .metadata.annotations["cert-manager.io/inject-ca-from"] == ($ns + "/" + $rel + "-serving"))' \
    --arg ns "$DRY_NS" --arg rel "$REL"
  # Client-side checks of the cert-manager documents (their CRDs are not installed here).
  check_jq "certManager mode: self-signed Issuer -> CA Certificate -> CA Issuer -> serving Certificate" "$F" \
    '[.[] | select(.apiVersion == "cert-manager.io/v1")] as $cm
     | ($cm | map(.kind) | sort) == ["Certificate", "Certificate", "Issuer", "Issuer"]
       and ($cm | any(.kind == "Issuer" and .metadata.name == ($rel + "-selfsigned") and .spec.selfSigned == {}))
       and ($cm | any(.kind == "Certificate" and .metadata.name == ($rel + "-ca") and .spec.isCA == true
                      and .spec.secretName == ($rel + "-ca") and .spec.issuerRef.name == ($rel + "-selfsigned")))
       and ($cm | any(.kind == "Issuer" and .metadata.name == ($rel + "-ca") and .spec.ca.secretName == ($rel + "-ca")))
       and ($cm | all(.metadata.namespace == $ns))' \
    --arg ns "$DRY_NS" --arg rel "$REL"
  check_jq "certManager mode: serving Certificate for the four Service names, into the mounted Secret" "$F" \
    '.[] | select(.kind == "Certificate" and .metadata.name == ($rel + "-serving")) | .spec
     | .dnsNames == [$rel, ($rel + "." + $ns), ($rel + "." + $ns + ".svc"), ($rel + "." + $ns + ".svc.cluster.local")]
       and .secretName == $mounted and .issuerRef.name == ($rel + "-ca") and .privateKey.algorithm == "ECDSA"' \
    --arg ns "$DRY_NS" --arg rel "$REL" --arg mounted "$(mounted_secret "$F")"
  server_validate "certManager mode" "$F" "$DRY_NS"
fi

# external mode
REL="$PREFIX-e"
if attempt "render: certificates.mode=external" render ext "$REL" "$DRY_NS" \
  --set certificates.mode=external --set certificates.external.secretName=my-tls \
  --set certificates.external.caBundle="$EXTERNAL_CA"; then
  F="$WORK/ext.json"
  check_webhook_settings "external mode" "$F" "$DRY_NS"
  check_deployment_settings "external mode" "$F"
  check_jq "external mode: mounts the given Secret, uses the given caBundle, creates no Secret" "$F" \
    '([.[] | select(.kind == "Secret")] | length == 0)
     and (.[] | select(.kind == "MutatingWebhookConfiguration") | .webhooks[0].clientConfig.caBundle == $ca)' \
    --arg ca "$EXTERNAL_CA"
  if [ "$(mounted_secret "$F")" = my-tls ]; then pass "external mode: Deployment mounts Secret my-tls"; else
    fail "external mode: Deployment mounts Secret my-tls" "mounts '$(mounted_secret "$F")'"; fi
  server_validate "external mode" "$F" "$DRY_NS"
fi

# HA profile, with every optional object switched on
REL="$PREFIX-ha"
if attempt "render: ci/ha-values.yaml (+ NetworkPolicy, ServiceMonitor)" render ha "$REL" "$DRY_NS" \
  -f "$CHART/ci/ha-values.yaml" --set networkPolicy.enabled=true --set metrics.serviceMonitor.enabled=true \
  --set-json 'networkPolicy.adminFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]'; then
  F="$WORK/ha.json"
  check_webhook_settings "HA profile" "$F" "$DRY_NS"
  check_deployment_settings "HA profile" "$F"
  check_jq "HA profile: 3 replicas, failurePolicy Fail, PDB minAvailable 2, required hostname anti-affinity" "$F" \
    '(.[] | select(.kind == "Deployment") | .spec.replicas == 3
        and .spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey == "kubernetes.io/hostname")
     and (.[] | select(.kind == "MutatingWebhookConfiguration") | .webhooks[0].failurePolicy == "Fail")
     and (.[] | select(.kind == "PodDisruptionBudget") | .spec.minAvailable == 2)'
  check_jq "HA profile: NetworkPolicy opens 8443 to all and the admin port to the given peers" "$F" \
    '.[] | select(.kind == "NetworkPolicy") | .spec.ingress
     | length == 2 and .[0].from == null and .[0].ports[0].port == "webhook"
       and .[1].ports[0].port == "admin" and (.[1].from | length == 1)'
  check_jq "HA profile: ServiceMonitor scrapes the metrics Service" "$F" \
    '.[] | select(.kind == "ServiceMonitor") | .spec.endpoints[0].port == "metrics" and .spec.endpoints[0].path == "/metrics"'
  server_validate "HA profile" "$F" "$DRY_NS"
fi

# A single replica gets no PodDisruptionBudget (it would block every drain).
if render single "$PREFIX-1" "$DRY_NS" --set replicaCount=1 >"$WORK/last.log" 2>&1; then
  check_jq "replicaCount=1: no PodDisruptionBudget" "$WORK/single.json" '[.[] | select(.kind == "PodDisruptionBudget")] | length == 0'
else
  fail "render: replicaCount=1" "$(tail -n 3 "$WORK/last.log")"
fi

# Creates a namespace whose pods get a node selector no node matches (PodNodeSelector).
unschedulable_namespace() {
  "$KUBECTL" create namespace "$1" &&
    "$KUBECTL" annotate namespace "$1" \
      scheduler.alpha.kubernetes.io/node-selector=e2e.pullsecret-injector.io/no-node=true
}

# ---------------------------------------------------------------------------------------------
say ""
say "== helm install / upgrade / uninstall"

if [ "$CLUSTER" != 1 ]; then
  skip "helm install, upgrade and uninstall" "no cluster"
else
  REL="$PREFIX"
  NS="$REL"
  INSTALLED_RELEASE=$REL
  CREATED_NAMESPACES+=("$NS")
  MWC="$REL"
  SECRET="$REL-tls"
  INSTALL_ARGS=(
    --set webhook.url="$WEBHOOK_URL"
    --set webhook.failurePolicy=Ignore
    --set-json "webhook.extraNamespaceSelectorExpressions=[{\"key\":\"$NEVER_LABEL\",\"operator\":\"Exists\"}]"
  )
  # Pods of these namespaces are never scheduled: the chart's default image is not pullable
  # here, and the node must not try to reach a registry that does not exist.
  unschedulable_namespace "$NS"
  if attempt "helm install $REL (webhook.url=$WEBHOOK_URL, no --wait)" \
    "$HELM" install "$REL" "$CHART" -n "$NS" --create-namespace "${INSTALL_ARGS[@]}"; then

    "$KUBECTL" get mutatingwebhookconfiguration "$MWC" -o json 2>"$WORK/last.log" | jq '[.]' >"$WORK/live.json" ||
      fail "installed: MutatingWebhookConfiguration $MWC exists" "$(tail -n 3 "$WORK/last.log")"
    check_webhook_settings "installed" "$WORK/live.json" "$NS"
    check_jq "installed: failurePolicy Ignore, clientConfig.url, no service" "$WORK/live.json" \
      '.[0].webhooks[0] | .failurePolicy == "Ignore" and .clientConfig.url == $url and .clientConfig.service == null' \
      --arg url "$WEBHOOK_URL"
    check_jq "installed: namespaceSelector requires this run's label, so it matches no other namespace" \
      "$WORK/live.json" '.[0].webhooks[0].namespaceSelector.matchExpressions | any(. == {key: $k, operator: "Exists"})' \
      --arg k "$NEVER_LABEL"

    ca_before=$("$KUBECTL" -n "$NS" get secret "$SECRET" -o jsonpath='{.data.ca\.crt}' || true)
    tls_before=$("$KUBECTL" -n "$NS" get secret "$SECRET" -o jsonpath='{.data.tls\.crt}' || true)
    bundle_before=$(jq -r '.[0].webhooks[0].clientConfig.caBundle // empty' "$WORK/live.json" || true)
    if [ -n "$ca_before" ] && [ "$bundle_before" = "$ca_before" ]; then
      pass "installed: webhook caBundle equals ca.crt of Secret $SECRET"
    else
      fail "installed: webhook caBundle equals ca.crt of Secret $SECRET" \
        "caBundle ${bundle_before:0:40}... vs ca.crt ${ca_before:0:40}..."
    fi
    check "installed: Deployment, Services, ServiceAccount, PDB exist" \
      "$KUBECTL" -n "$NS" get deployment/"$REL" service/"$REL" service/"$REL-metrics" \
      serviceaccount/"$REL" poddisruptionbudget/"$REL"
    check "installed: the ServiceAccount may list secrets and watch namespaces cluster-wide" \
      "$KUBECTL" auth can-i watch namespaces --as "system:serviceaccount:$NS:$REL"
    can() { "$KUBECTL" auth can-i "$@" --as "system:serviceaccount:$NS:$REL" 2>/dev/null; }
    if [ "$(can list secrets -A)" = yes ] && [ "$(can get pods -A)" = no ] &&
      [ "$(can create secrets -n default)" = no ] && [ "$(can update namespaces)" = no ]; then
      pass "installed: RBAC is read-only secrets/namespaces (no pods, no writes)"
    else
      fail "installed: RBAC is read-only secrets/namespaces (no pods, no writes)" \
        "list secrets: $(can list secrets -A); get pods: $(can get pods -A); create secrets: $(can create secrets -n default); update namespaces: $(can update namespaces)"
    fi
    check_rbac_exact "$NS" "$REL"

    # The only namespace the webhook covers: the apiserver calls the URL, nobody answers, and
    # failurePolicy Ignore admits the pod unchanged.
    PROBE_NS="$REL-probe"
    if unschedulable_namespace "$PROBE_NS" >"$WORK/last.log" 2>&1; then
      CREATED_NAMESPACES+=("$PROBE_NS")
      check "label probe namespace $PROBE_NS with $NEVER_LABEL" \
        "$KUBECTL" label namespace "$PROBE_NS" "$NEVER_LABEL=yes"
      # Pods need the namespace's default ServiceAccount, made by the controller manager.
      for _ in $(seq 1 60); do
        "$KUBECTL" -n "$PROBE_NS" get serviceaccount default >/dev/null 2>&1 && break
        sleep 0.5
      done
      check "failurePolicy Ignore: a covered pod is admitted although the webhook is down" \
        "$KUBECTL" -n "$PROBE_NS" run probe --image=registry.invalid/probe:1 --restart=Never
    else
      fail "create probe namespace $PROBE_NS" "$(tail -n 3 "$WORK/last.log")"
    fi

    if attempt "helm upgrade $REL (--reuse-values, logLevel=debug, controller.enabled=true)" \
      "$HELM" upgrade "$REL" "$CHART" -n "$NS" --reuse-values --set logLevel=debug --set controller.enabled=true; then
      ca_after=$("$KUBECTL" -n "$NS" get secret "$SECRET" -o jsonpath='{.data.ca\.crt}' || true)
      tls_after=$("$KUBECTL" -n "$NS" get secret "$SECRET" -o jsonpath='{.data.tls\.crt}' || true)
      bundle_after=$("$KUBECTL" get mutatingwebhookconfiguration "$MWC" -o jsonpath='{.webhooks[0].clientConfig.caBundle}' || true)
      if [ -n "$bundle_after" ] && [ "$bundle_after" = "$bundle_before" ]; then
        pass "upgrade: webhook caBundle unchanged"
      else
        fail "upgrade: webhook caBundle unchanged" "before ${bundle_before:0:40}... after ${bundle_after:0:40}..."
      fi
      if [ -n "$ca_after" ] && [ "$ca_after" = "$ca_before" ] && [ "$tls_after" = "$tls_before" ]; then
        pass "upgrade: CA and serving certificate in Secret $SECRET unchanged"
      else
        fail "upgrade: CA and serving certificate in Secret $SECRET unchanged" \
          "ca.crt changed: $([ "$ca_after" = "$ca_before" ] && echo no || echo yes); tls.crt changed: $([ "$tls_after" = "$tls_before" ] && echo no || echo yes)"
      fi
      level=$("$KUBECTL" -n "$NS" get deployment "$REL" \
        -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="PULLSECRET_INJECTOR_LOG_LEVEL")].value}' || true)
      if [ "$level" = debug ]; then pass "upgrade: applied (log level debug)"; else
        fail "upgrade: applied (log level debug)" "PULLSECRET_INJECTOR_LOG_LEVEL is '$level'"; fi
      if [ "$(can create secrets -n default)" = yes ] && [ "$(can update leases -n "$NS")" = yes ] &&
        [ "$(can update leases -n default)" = no ] && [ "$(can get pods -A)" = no ]; then
        pass "upgrade: controller.enabled grants secret writes and leases in $NS only"
      else
        fail "upgrade: controller.enabled grants secret writes and leases in $NS only" \
          "create secrets: $(can create secrets -n default); update leases in $NS: $(can update leases -n "$NS"); in default: $(can update leases -n default); get pods: $(can get pods -A)"
      fi
    fi

    if attempt "helm uninstall $REL" "$HELM" uninstall "$REL" -n "$NS"; then
      INSTALLED_RELEASE=""
      left=$("$KUBECTL" get mutatingwebhookconfiguration,clusterrole,clusterrolebinding \
        --ignore-not-found -o name 2>&1 | grep -F "/$REL" || true)
      if [ -z "$left" ]; then pass "uninstall: cluster-scoped objects removed"; else
        fail "uninstall: cluster-scoped objects removed" "left: $left"; fi
    fi
  fi

  ns_failed=0
  for ns in "${CREATED_NAMESPACES[@]}"; do
    "$KUBECTL" delete namespace "$ns" --ignore-not-found --timeout=90s >"$WORK/last.log" 2>&1 || ns_failed=1
  done
  if [ "$ns_failed" = 0 ]; then
    pass "cleanup: test namespaces deleted"
    CREATED_NAMESPACES=()
  else
    fail "cleanup: test namespaces deleted" "$(tail -n 3 "$WORK/last.log")"
  fi
fi

# ---------------------------------------------------------------------------------------------
say ""
if [ "$FAILED" -gt 0 ]; then
  say "Failed:"
  for name in "${FAILURES[@]}"; do say "  - $name"; done
fi
if [ "$SKIPPED" -gt 0 ]; then
  say "chart: $PASSED passed, $FAILED failed, $SKIPPED skipped"
else
  say "chart: $PASSED passed, $FAILED failed"
fi
[ "$FAILED" -eq 0 ]

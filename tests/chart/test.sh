#!/usr/bin/env bash
# Tests of the Helm chart charts/pullsecret-injector.
#
#   1. helm lint --strict: default values, each certificate mode, the HA profile; and lint
#      fails wherever helm template fails (the chart's own checks).
#   2. The schema rejects a misspelt key and wrong types; the chart's own checks fail clearly.
#   3. helm template for each certificate mode and the HA profile, with assertions on the
#      rendered webhook, Deployment, RBAC and certificates; then every document the apiserver
#      knows is validated with `kubectl apply --dry-run=server` (cert-manager and
#      ServiceMonitor kinds, whose CRDs are not installed, are checked here instead).
#   4. NOTES.txt (helm install --dry-run): the selectors it names, failurePolicy Fail after the
#      rollout, the warning for a ServiceMonitor the NetworkPolicy keeps out.
#   5. helm install (webhook.url pointing at a port nobody serves), assertions on the live
#      objects, a pod created in a namespace the webhook covers (failurePolicy Ignore admits
#      it), helm upgrade keeping the CA and serving certificate, a CA rotation that trusts
#      both CAs, helm uninstall.
# The installs with failurePolicy Fail and running pods (the hooks) are e2e scenarios
# (tests/e2e/incluster.rs), since they need the node.
#
# Needs a cluster for 3's validation and for 5: KUBECONFIG (as in .local/cluster.env, which is
# sourced when KUBECONFIG is unset); the chart's CRDs are applied first when the cluster lacks
# them. Without a reachable cluster every check that needs one fails: nothing is skipped.
# CHART_TEST_OFFLINE=1 asks for the offline checks only (1 to 3 without the server-side
# validation); the summary says so.
# Tools: helm, kubectl (from $HELM/$KUBECTL, $CLUSTER_BIN_DIR, .local/bin, the control-plane
# cache or PATH), jq, openssl; a missing tool fails the run.
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
NOT_REQUESTED=0
FAILURES=()
CREATED_NAMESPACES=()
CREATED_CRDS=()
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
# needs_cluster NAME: true when the cluster is there; otherwise a failure, or in an offline
# run a check that was not asked for.
needs_cluster() {
  if [ "$CLUSTER" = 1 ]; then
    return 0
  elif [ "$OFFLINE" = 1 ]; then
    NOT_REQUESTED=$((NOT_REQUESTED + 1))
    say "OFF   $1 (CHART_TEST_OFFLINE=1)"
  else
    fail "$1" "no reachable cluster (see 'cluster reachable' above)"
  fi
  return 1
}

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
  local expected="clusterpullsecrets.pullsecret-injector.io [get list watch];mutatingwebhookconfigurations.admissionregistration.k8s.io [get];namespaces [get list watch];pullsecretrules.pullsecret-injector.io [get list watch];secrets [get list watch]"
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
# the (grep -E) pattern, i.e. it failed for the expected reason. The output is matched as one
# line: Helm 4 prints a template's error over several lines below its [ERROR] line.
check_fails() {
  local name=$1 pattern=$2; shift 2
  if "$@" >"$WORK/last.log" 2>&1; then
    fail "$name" "expected a failure, but it succeeded: $*"
  elif tr '\n' ' ' <"$WORK/last.log" | grep -Eq -- "$pattern"; then
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
      "$INSTALLED_RELEASE-controller" "$INSTALLED_RELEASE-hook" --ignore-not-found >/dev/null 2>&1
  fi
  for ns in ${CREATED_NAMESPACES[@]+"${CREATED_NAMESPACES[@]}"}; do
    "$KUBECTL" delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1
  done
  for crd in ${CREATED_CRDS[@]+"${CREATED_CRDS[@]}"}; do
    "$KUBECTL" delete crd "$crd" --ignore-not-found --wait=false >/dev/null 2>&1
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

HELM=$(find_tool helm "${HELM:-}") || { say "error: helm not found (set HELM or run tests/controlplane/build-tool.sh helm)"; exit 1; }
KUBECTL=$(find_tool kubectl "${KUBECTL:-}") || { say "error: kubectl not found (set KUBECTL or run tests/controlplane/build.sh)"; exit 1; }
for tool in jq openssl; do
  command -v "$tool" >/dev/null || { say "error: $tool is required"; exit 1; }
done
say "helm:    $HELM ($("$HELM" version --template '{{.Version}}' 2>/dev/null || echo '?'))"
say "kubectl: $KUBECTL"

CLUSTER=0
# Server-side validation of PullSecretRules and ClusterPullSecrets needs the CRDs installed.
CRDS_INSTALLED=0
if [ "$OFFLINE" != 1 ]; then
  if [ -n "${KUBECONFIG:-}" ] && [ "$("$KUBECTL" get --raw /readyz 2>/dev/null)" = ok ]; then
    CLUSTER=1
    KUBE_VERSION=$("$KUBECTL" version -o json 2>/dev/null | jq -r '.serverVersion.gitVersion // empty')
    say "cluster: ${KUBECONFIG} (Kubernetes ${KUBE_VERSION:-?})"
    # Server-side validation of PullSecretRules and ClusterPullSecrets needs the CRDs; helm
    # install would add the same ones.
    if ! "$KUBECTL" get crd pullsecretrules.pullsecret-injector.io clusterpullsecrets.pullsecret-injector.io >/dev/null 2>&1; then
      check "the chart's CRDs applied for the server-side validation" \
        "$KUBECTL" apply --server-side -f "$CHART/crds"
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

# The webhook reads its own configuration's caBundle (resourceNames: the release's full name).
MWC_GET_RULE='{apiGroups: ["admissionregistration.k8s.io"], resources: ["mutatingwebhookconfigurations"], verbs: ["get"]}'

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
  # A pod per node (hard anti-affinity, host network) cannot surge onto a full node: one
  # replica at a time is replaced, the others serve; otherwise the new pod comes first.
  check_jq "$label: rolling update keeps replicas serving and never needs a spare node" "$file" \
    "$dep | (.spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution != null
               or .spec.template.spec.hostNetwork == true) as \$perNode
      | if \$perNode then .spec.strategy.rollingUpdate == {maxUnavailable: 1, maxSurge: 0} and .spec.replicas >= 2
        else .spec.strategy.rollingUpdate == {maxUnavailable: 0, maxSurge: 1} end"
  check_jq "$label: pods carry the selector, component and version labels" "$file" \
    "$dep | .spec.template.metadata.labels as \$l | (.spec.selector.matchLabels | to_entries | all(\$l[.key] == .value))
      and \$l[\"app.kubernetes.io/component\"] == \"admission-webhook\" and (\$l[\"app.kubernetes.io/version\"] | length > 0)"
  check_jq "$label: pod runs as non-root 65532 with RuntimeDefault seccomp" "$file" \
    "$dep.spec.template.spec.securityContext | .runAsNonRoot == true and .runAsUser == 65532 and .runAsGroup == 65532 and .seccompProfile.type == \"RuntimeDefault\""
  check_jq "$label: no pod but the Deployment's matches the Services' selector" "$file" \
    "[.[] | select(.kind == \"Job\") | .spec.template.metadata.labels[\"app.kubernetes.io/name\"]] | all(. != \"pullsecret-injector\")"
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
  check_jq "$label: ClusterRole is get/list/watch on secrets, namespaces and the CRDs, and get on its own webhook configuration, only" "$file" \
    "[.[] | select(.kind == \"ClusterRole\" and (.metadata.name | test(\"-(controller|hook)$\") | not))][0]
     | .rules[0:2] == $READ_ONLY_RULES and .rules[2:] == [$MWC_GET_RULE + {resourceNames: [.metadata.name]}]"
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
  check_jq "$label: the memory bounds the README's Memory section counts: 1024 connections, 32Mi of bodies" "$file" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec.containers[0].env
     | any(.name == "PULLSECRET_INJECTOR_MAX_CONNECTIONS" and .value == "1024")
       and any(.name == "PULLSECRET_INJECTOR_MAX_BODY_BYTES_IN_FLIGHT" and .value == "32Mi")'
}

# The Secret name the Deployment mounts.
mounted_secret() {
  jq -r '.[] | select(.kind == "Deployment") | .spec.template.spec.volumes[] | select(.name == "tls") | .secret.secretName' "$1"
}

# server_validate NAME JSON-FILE NAMESPACE: server-side dry-run of every document whose kind
# the apiserver knows (everything but cert-manager and Prometheus-operator kinds).
server_validate() {
  local name=$1 file=$2 namespace=$3
  needs_cluster "$name: server-side dry-run" || return 0
  # The kinds whose CRDs are not installed here are checked client-side above.
  local client_side='cert-manager\.io|monitoring\.coreos\.com'
  jq --arg skip "^($client_side)/" '{apiVersion: "v1", kind: "List",
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
# helm lint has no --api-versions: cert-manager is never served there, so lint refuses the
# mode as an install without cert-manager is refused.
check_fails "lint: certificates.mode=certManager without cert-manager says to install it" \
  "install cert-manager first" "$HELM" lint --strict "$CHART" "${KV[@]}" --set certificates.mode=certManager
check "lint: certificates.mode=external" "$HELM" lint --strict "$CHART" "${KV[@]}" \
  --set certificates.mode=external --set certificates.external.secretName=my-tls \
  --set certificates.external.caBundle="$EXTERNAL_CA"
check "lint: ci/ha-values.yaml" "$HELM" lint --strict "$CHART" "${KV[@]}" -f "$CHART/ci/ha-values.yaml"
check "lint: every optional object enabled" "$HELM" lint --strict "$CHART" "${KV[@]}" \
  --set networkPolicy.enabled=true --set metrics.serviceMonitor.enabled=true \
  --set metrics.prometheusRule.enabled=true --set controller.enabled=true \
  --set webhook.url="$WEBHOOK_URL" --set securityContext.fsGroup=65532 \
  --set priorityClass.create=true --set hostNetwork=true --set ports.webhook=10250 \
  --set-json 'webhook.matchConditions=[{"name":"not-mirror","expression":"true"}]'
# helm lint turns `fail` into an [INFO] line; the chart makes it an error, quoting the message.
check_fails "lint fails where template fails (terminationGracePeriodSeconds too short)" \
  'ERROR.*must exceed shutdownDelay \+ drainTimeout' "$HELM" lint --strict "$CHART" "${KV[@]}" --set drainTimeout=1m
check_fails "lint fails where template fails (external mode without a Secret)" \
  'ERROR.*needs certificates.external.secretName' "$HELM" lint --strict "$CHART" "${KV[@]}" \
  --set certificates.mode=external

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
check_fails "clusterPullSecrets without controller.enabled fail, saying what to do" \
  "clusterPullSecrets need controller.enabled=true" "${T[@]}" \
  --set-json 'clusterPullSecrets=[{"name":"c","source":{"namespace":"n","name":"s"}}]'
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
check_fails "podDisruptionBudget.minAvailable equal to replicaCount fails (drains would hang)" \
  "minAvailable 2 with replicaCount 2 allows no eviction" "${T[@]}" --set podDisruptionBudget.minAvailable=2
check_fails "podDisruptionBudget.minAvailable 100% fails" "minAvailable 100% allows no eviction" \
  "${T[@]}" --set podDisruptionBudget.minAvailable=100%
check_fails "schema rejects podDisruptionBudget.maxUnavailable 0" "maxUnavailable" \
  "${T[@]}" --set podDisruptionBudget.maxUnavailable=0
check_fails "replicaCount 0 without webhook.url fails" "replicaCount=0 leaves the webhook's Service without a pod" \
  "${T[@]}" --set replicaCount=0
check_fails "podAntiAffinity hard with one replica fails" "needs replicaCount >= 2" \
  "${T[@]}" --set podAntiAffinity=hard --set replicaCount=1
check_fails "certManager mode without cert-manager says to install it" "install cert-manager first" \
  "${T[@]}" --set certificates.mode=certManager
check_fails "schema rejects an unknown logLevel" "logLevel" "${T[@]}" --set logLevel=verbose
check_fails "schema rejects a registry pattern with a scheme" "registries" "${T[@]}" \
  --set-json 'pullSecretRules=[{"name":"r","namespace":"n","registries":["https://r.example/v2/"],"secrets":["s"]}]'
check_fails "schema rejects a webhook port a non-root container cannot bind" "webhook" \
  "${T[@]}" --set ports.webhook=443
if "${T[@]}" --set replicaCount=0 --set webhook.url="$WEBHOOK_URL" >/dev/null 2>"$WORK/last.log" &&
  "${T[@]}" --set logLevel='info\,pullsecret_injector=debug' >/dev/null 2>>"$WORK/last.log" &&
  "${T[@]}" --set podDisruptionBudget.maxUnavailable=1 >/dev/null 2>>"$WORK/last.log"; then
  pass "accepted: replicaCount 0 with webhook.url, a per-module logLevel, a PDB by maxUnavailable"
else
  fail "accepted: replicaCount 0 with webhook.url, a per-module logLevel, a PDB by maxUnavailable" \
    "$(tail -n 3 "$WORK/last.log")"
fi

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
  check_jq "helm mode: shadow mode off by default (PULLSECRET_INJECTOR_SHADOW=false)" "$F" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec.containers[0].env
     | any(.name == "PULLSECRET_INJECTOR_SHADOW" and .value == "false")'
fi

# Shadow mode for the whole cluster
if attempt "render: shadow=true" render shadow "$PREFIX-s" "$DRY_NS" --set shadow=true; then
  check_jq "shadow=true: PULLSECRET_INJECTOR_SHADOW=true" "$WORK/shadow.json" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec.containers[0].env
     | any(.name == "PULLSECRET_INJECTOR_SHADOW" and .value == "true")'
fi
# The scheduled pull audit: list on the workload kinds only when it is on
if attempt "render: controller.auditInterval=10m" render audit "$PREFIX-a" "$DRY_NS" \
  --set controller.enabled=true --set controller.auditInterval=10m; then
  check_jq "auditInterval: PULLSECRET_INJECTOR_AUDIT_INTERVAL=10m" "$WORK/audit.json" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec.containers[0].env
     | any(.name == "PULLSECRET_INJECTOR_AUDIT_INTERVAL" and .value == "10m")'
  check_jq "auditInterval: the controller may list Pods, Deployments, StatefulSets, DaemonSets, Jobs and CronJobs, and nothing more on them" "$WORK/audit.json" \
    '[.[] | select(.kind == "ClusterRole" and (.metadata.name | test("-controller$"))) | .rules[]
      | select(any(.resources[]; test("^(pods|deployments|statefulsets|daemonsets|jobs|cronjobs)$")))]
     | map({g: .apiGroups, r: .resources, v: .verbs})
     == [{g: [""], r: ["pods"], v: ["list"]}, {g: ["apps"], r: ["deployments", "statefulsets", "daemonsets"], v: ["list"]},
         {g: ["batch"], r: ["jobs", "cronjobs"], v: ["list"]}]'
fi
if attempt "render: controller.enabled without auditInterval" render noaudit "$PREFIX-n" "$DRY_NS" \
  --set controller.enabled=true; then
  check_jq "no auditInterval: no permission on workload kinds, no PULLSECRET_INJECTOR_AUDIT_INTERVAL" "$WORK/noaudit.json" \
    '([.[] | select(.kind == "ClusterRole" or .kind == "Role") | .rules[].resources[]]
      | all(test("^(pods|deployments|statefulsets|daemonsets|jobs|cronjobs)$") | not))
     and (.[] | select(.kind == "Deployment") | .spec.template.spec.containers[0].env
          | all(.name != "PULLSECRET_INJECTOR_AUDIT_INTERVAL"))'
fi
if attempt "render: controller.auditInterval=10m in namespaced mode" render audit-ns "$PREFIX-an" "$DRY_NS" \
  --set controller.enabled=true --set controller.auditInterval=10m --set 'namespaces={shop,billing}'; then
  check_jq "auditInterval, namespaced: list on the workload kinds in each served Role, none cluster-wide" "$WORK/audit-ns.json" \
    '([.[] | select(.kind == "Role" and (.metadata.namespace == "shop" or .metadata.namespace == "billing"))
       | [.rules[] | select(.resources == ["deployments", "statefulsets", "daemonsets"] and .verbs == ["list"])] | length]
      == [1, 1])
     and ([.[] | select(.kind == "ClusterRole") | .rules[].resources[]] | all(test("^(deployments|jobs)$") | not))'
fi
check_fails "values: controller.auditInterval needs controller.enabled" "auditInterval needs controller.enabled" \
  "$HELM" template x "$CHART" "${KV[@]}" --set controller.auditInterval=10m
check_fails "values: shadow must be a boolean" "shadow.*boolean|boolean.*shadow" \
  "$HELM" template x "$CHART" "${KV[@]}" --set-string shadow=yes
# Credential provider plugins: the node's config file as a ConfigMap, plugins copied from an
# image by an init container (or a hostPath), env for the plugins; RBAC unchanged.
REL="$PREFIX-cp"
CP_CONFIG='{"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig","providers":[{"name":"ecr-credential-provider","matchImages":["*.dkr.ecr.*.amazonaws.com"],"defaultCacheDuration":"12h","apiVersion":"credentialprovider.kubelet.k8s.io/v1","args":["get-credentials"]}]}'
if attempt "render: credentialProviders with an image, a config and env" render plugins "$REL" "$DRY_NS" \
  --set controller.enabled=true --set credentialProviders.image=registry.example/plugins:1 \
  --set-json "credentialProviders.config=$CP_CONFIG" \
  --set-json 'credentialProviders.env=[{"name":"AWS_REGION","value":"us-east-1"}]' \
  --set-json 'serviceAccount.annotations={"eks.amazonaws.com/role-arn":"arn:aws:iam::123456789012:role/ecr-pull"}' \
  --set-json "clusterPullSecrets=[{\"name\":\"$REL-ecr\",\"source\":{\"namespace\":\"$DRY_NS\",\"name\":\"ecr\"},\"credentialProvider\":{\"name\":\"ecr-credential-provider\",\"images\":[\"123456789012.dkr.ecr.us-east-1.amazonaws.com/app\"]}}]"; then
  F="$WORK/plugins.json"
  check_deployment_settings "credential providers" "$F"
  check_jq "credential providers: the config file is a ConfigMap mounted where the flag points" "$F" \
    '(.[] | select(.kind == "ConfigMap" and .metadata.name == ($rel + "-credential-providers")) | .data["config.yaml"] | contains("ecr-credential-provider"))
     and (.[] | select(.kind == "Deployment") | .spec.template.spec.containers[0]
       | (.env | any(.name == "PULLSECRET_INJECTOR_IMAGE_CREDENTIAL_PROVIDER_CONFIG" and .value == "/etc/pullsecret-injector/credential-providers/config.yaml"))
         and (.volumeMounts | any(.mountPath == "/etc/pullsecret-injector/credential-providers")))' --arg rel "$REL"
  check_jq "credential providers: an init container copies the image's plugins into the plugin directory" "$F" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec
     | (.initContainers[0] | .image == "registry.example/plugins:1"
          and .command == ["cp", "-R", "/plugins/.", "/var/lib/pullsecret-injector/credential-provider-plugins/"]
          and .securityContext.readOnlyRootFilesystem == true)
       and (.volumes | any(.name == "credential-provider-plugins" and .emptyDir != null))
       and (.containers[0].env | any(.name == "PULLSECRET_INJECTOR_IMAGE_CREDENTIAL_PROVIDER_BIN_DIR")
          and any(.name == "AWS_REGION" and .value == "us-east-1"))'
  check_jq "credential providers: plugins get the variables of env and passEnv by name, and a run limit" "$F" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec.containers[0].env
     | (map(select(.name == "PULLSECRET_INJECTOR_IMAGE_CREDENTIAL_PROVIDER_PASS_ENV"))[0].value | split(",")
          | (index("AWS_REGION") != null) and (index("AWS_WEB_IDENTITY_TOKEN_FILE") != null)
            and (index("AZURE_FEDERATED_TOKEN_FILE") != null) and (map(select(. == "AWS_REGION")) | length == 1))
       and any(.name == "PULLSECRET_INJECTOR_IMAGE_CREDENTIAL_PROVIDER_MAX_CONCURRENT" and .value == "2")'
  check_jq "credential providers: workload identity on the ServiceAccount, the ClusterPullSecret names the provider" "$F" \
    '(.[] | select(.kind == "ServiceAccount" and .metadata.name == $rel) | .metadata.annotations["eks.amazonaws.com/role-arn"] | startswith("arn:aws:iam::"))
     and (.[] | select(.kind == "ClusterPullSecret") | .spec.credentialProvider.name == "ecr-credential-provider")' --arg rel "$REL"
  check_jq "credential providers: RBAC no wider than the controller's" "$F" \
    '[.[] | select(.kind == "ClusterRole" or .kind == "Role") | .rules[]] | map(.resources[]) | unique == ["clusterpullsecrets", "clusterpullsecrets/status", "events", "leases", "mutatingwebhookconfigurations", "namespaces", "pullsecretrules", "secrets"]'
fi
if attempt "render: credentialProviders from the node's directory (hostPath)" render plugins-host "$REL" "$DRY_NS" \
  --set controller.enabled=true --set credentialProviders.hostPath=/usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec; then
  check_jq "credential providers: hostPath mounted read-only, no init container" "$WORK/plugins-host.json" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec
     | .initContainers == null
       and (.volumes | any(.name == "credential-provider-plugins" and .hostPath.path == "/usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec"))
       and (.containers[0].volumeMounts | any(.name == "credential-provider-plugins" and .readOnly == true))'
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
     and ([.[] | select(.kind == "ClusterRoleBinding" and .metadata.annotations["helm.sh/hook"] == null)] | length == 2)' \
    --arg ns "$DRY_NS" --arg rel "$REL"
  check_jq "controller enabled: env enables the controller, Lease named after the release, identity = pod name" "$F" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec.containers[0].env
     | any(.name == "PULLSECRET_INJECTOR_ENABLE_CONTROLLER" and .value == "true")
       and any(.name == "PULLSECRET_INJECTOR_LEASE_NAME" and .value == ($rel + "-controller"))
       and any(.name == "PULLSECRET_INJECTOR_LEASE_IDENTITY" and .valueFrom.fieldRef.fieldPath == "metadata.name")
       and any(.name == "PULLSECRET_INJECTOR_LEASE_DURATION" and .value == "15s")
       and any(.name == "PULLSECRET_INJECTOR_CONTROLLER_QPS" and .value == "200")
       and any(.name == "PULLSECRET_INJECTOR_CONTROLLER_BURST" and .value == "400")' --arg rel "$REL"
  check_jq "controller enabled: the PullSecretRule and ClusterPullSecret from values" "$F" \
    '(.[] | select(.kind == "PullSecretRule") | .metadata.namespace == $ns
        and .spec == {registries: ["registry.example.com"], secrets: ["mirror"], mode: "exclusive"})
     and (.[] | select(.kind == "ClusterPullSecret") | .metadata.name == ($rel + "-corp")
        and .spec == {source: {namespace: $ns, name: "corp"}, namespaceSelector: {matchLabels: {corp: "true"}}, targetName: "corp-pull"})' \
    --arg ns "$DRY_NS" --arg rel "$REL"
  server_validate "controller enabled" "$F" "$DRY_NS"
fi

# Namespaced mode: Secrets only through a Role in each listed namespace
REL="$PREFIX-ns"
if attempt "render: namespaces (namespaced mode) with the controller, pod recovery and secretLabelSelector" \
  render namespaced "$REL" "$DRY_NS" --set 'namespaces={shop,billing}' --set controller.enabled=true \
  --set controller.recoverStuckPods=true --set secretLabelSelector=team=shop; then
  F="$WORK/namespaced.json"
  check_jq "namespaced mode: the ClusterRole reads namespaces and the two CRDs, no secrets" "$F" \
    '.[] | select(.kind == "ClusterRole" and .metadata.name == $rel) | .rules == [
       {apiGroups: [""], resources: ["namespaces"], verbs: ["get", "list", "watch"]},
       {apiGroups: ["pullsecret-injector.io"], resources: ["pullsecretrules", "clusterpullsecrets"], verbs: ["get", "list", "watch"]},
       {apiGroups: ["admissionregistration.k8s.io"], resources: ["mutatingwebhookconfigurations"], resourceNames: [$rel], verbs: ["get"]}]' \
    --arg rel "$REL"
  check_jq "namespaced mode: -controller ClusterRole grants no secrets and no pods" "$F" \
    '.[] | select(.kind == "ClusterRole" and .metadata.name == ($rel + "-controller"))
     | [.rules[].resources[]] | (index("secrets") == null and index("pods") == null and index("pods/eviction") == null)' \
    --arg rel "$REL"
  check_jq "namespaced mode: a Role and RoleBinding in each listed namespace, Secrets and recovery only" "$F" \
    '([.[] | select(.kind == "Role" and .metadata.name == $rel)] | map(.metadata.namespace) | sort == ["billing", "shop"])
     and ([.[] | select(.kind == "Role" and .metadata.name == $rel) | .rules] | unique == [[
       {apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]},
       {apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch"]},
       {apiGroups: [""], resources: ["pods/eviction"], verbs: ["create"]}]])
     and ([.[] | select(.kind == "RoleBinding" and .metadata.name == $rel)
           | select(.roleRef.name == $rel and .subjects == [{kind: "ServiceAccount", name: $rel, namespace: $ns}])
           | .metadata.namespace] | sort == ["billing", "shop"])' \
    --arg rel "$REL" --arg ns "$DRY_NS"
  check_jq "namespaced mode: namespaceSelector sends only the listed namespaces" "$F" \
    '.[] | select(.kind == "MutatingWebhookConfiguration") | .webhooks[0].namespaceSelector.matchExpressions
     | any(. == {key: "kubernetes.io/metadata.name", operator: "In", values: ["shop", "billing"]})'
  check_jq "namespaced mode: env names the namespaces and the Secret label selector" "$F" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec.containers[0].env
     | any(.name == "PULLSECRET_INJECTOR_NAMESPACES" and .value == "shop,billing")
       and any(.name == "PULLSECRET_INJECTOR_SECRET_LABEL_SELECTOR" and .value == "team=shop")'
fi

# Every way of saying "no namespaces" is cluster-wide: [] (the default), {} (which helm reads as
# [""]) and null.
for way in 'namespaces={}' 'namespaces=null'; do
  if attempt "render: --set $way" render nsnone "$PREFIX-nn" "$DRY_NS" --set "$way"; then
    check_jq "--set $way: cluster-wide (no Role, no namespace list, no name selector)" "$WORK/nsnone.json" \
      '([.[] | select(.kind == "Role")] | length == 0)
       and ([.[] | select(.kind == "Deployment") | .spec.template.spec.containers[0].env[]
             | select(.name == "PULLSECRET_INJECTOR_NAMESPACES")] | length == 0)
       and (.[] | select(.kind == "MutatingWebhookConfiguration")
            | .webhooks[0].namespaceSelector.matchExpressions | all(.operator != "In"))'
  fi
done

# certManager mode
REL="$PREFIX-c"
if attempt "render: certificates.mode=certManager (cert-manager.io/v1 served)" render cm "$REL" "$DRY_NS" \
  --set certificates.mode=certManager --api-versions cert-manager.io/v1; then
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
if attempt "render: ci/ha-values.yaml (+ NetworkPolicy, ServiceMonitor, PrometheusRule)" render ha "$REL" "$DRY_NS" \
  -f "$CHART/ci/ha-values.yaml" --set networkPolicy.enabled=true --set metrics.serviceMonitor.enabled=true \
  --set metrics.prometheusRule.enabled=true --set metrics.grafanaDashboard.enabled=true \
  --set-json 'metrics.grafanaDashboard.annotations={"grafana_folder":"Kubernetes"}' \
  --set-json 'networkPolicy.adminFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]'; then
  F="$WORK/ha.json"
  check_webhook_settings "HA profile" "$F" "$DRY_NS"
  check_deployment_settings "HA profile" "$F"
  check_jq "HA profile: 3 replicas, PDB minAvailable 2, required hostname anti-affinity among one revision's pods, one replica replaced at a time" "$F" \
    '(.[] | select(.kind == "Deployment") | .spec.replicas == 3
        and .spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey == "kubernetes.io/hostname"
        and .spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].matchLabelKeys == ["pod-template-hash"]
        and .spec.strategy.rollingUpdate == {maxUnavailable: 1, maxSurge: 0})
     and (.[] | select(.kind == "PodDisruptionBudget") | .spec.minAvailable == 2)'
  check_jq "HA profile: registered with Ignore; a post-install/upgrade/rollback Job switches to Fail after the rollout" "$F" \
    '(.[] | select(.kind == "MutatingWebhookConfiguration") | .webhooks[0].failurePolicy == "Ignore")
     and (.[] | select(.kind == "Job" and .metadata.name == ($rel + "-enable-fail"))
          | .metadata.annotations["helm.sh/hook"] == "post-install,post-upgrade,post-rollback"
            and .spec.template.spec.containers[0].args == ["chart-hook", "--timeout-seconds=210", "enable-fail-policy",
                 "--namespace", $ns, "--deployment", $rel, "--webhook-configuration", $rel]
            and .spec.template.spec.serviceAccountName == ($rel + "-hook")
            and .spec.backoffLimit == 0 and .spec.activeDeadlineSeconds == 270
            and .spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem == true)' \
    --arg ns "$DRY_NS" --arg rel "$REL"
  check_jq "HA profile: the hook may get/patch only this webhook configuration and watch only this Deployment" "$F" \
    '(.[] | select(.kind == "ClusterRole" and .metadata.name == ($rel + "-hook")) | .rules == [
        {apiGroups: ["admissionregistration.k8s.io"], resources: ["mutatingwebhookconfigurations"], resourceNames: [$rel], verbs: ["get", "patch"]}])
     and (.[] | select(.kind == "Role" and .metadata.name == ($rel + "-hook")) | .rules == [
        {apiGroups: ["apps"], resources: ["deployments"], resourceNames: [$rel], verbs: ["get", "list", "watch"]}])
     and ([.[] | select(.metadata.name == ($rel + "-hook")) | .metadata.annotations["helm.sh/hook-weight"]] | all(. == "-10"))' \
    --arg rel "$REL"
  check_jq "HA profile: with Fail, kube-public, kube-node-lease, cert-manager and CNI namespaces are excluded too" "$F" \
    '.[] | select(.kind == "MutatingWebhookConfiguration") | .webhooks[0].namespaceSelector.matchExpressions[0].values
     | . as $v | ["kube-system", $ns, "kube-public", "kube-node-lease", "cert-manager", "calico-system", "kube-flannel", "cilium"] | all(. as $n | $v | index($n) != null)' \
    --arg ns "$DRY_NS"
  check_jq "HA profile: a PriorityClass of the chart's own, used by the pods (not system-cluster-critical)" "$F" \
    '(.[] | select(.kind == "PriorityClass") | .metadata.name == $rel and .value == 1000000 and .globalDefault == false)
     and (.[] | select(.kind == "Deployment") | .spec.template.spec.priorityClassName == $rel)' --arg rel "$REL"
  check_jq "HA profile: NetworkPolicy opens the webhook port to all and the admin port to the given peers" "$F" \
    '.[] | select(.kind == "NetworkPolicy") | .spec.ingress
     | length == 2 and .[0].from == null and .[0].ports[0].port == "webhook"
       and .[1].ports[0].port == "admin" and (.[1].from | length == 1)'
  check_jq "HA profile: ServiceMonitor scrapes the metrics Service" "$F" \
    '.[] | select(.kind == "ServiceMonitor") | .spec.endpoints[0].port == "metrics" and .spec.endpoints[0].path == "/metrics"'
  check_jq "HA profile: PrometheusRule alerts on readiness, certificate expiry and reloads, watch errors, scoped to this release" "$F" \
    '.[] | select(.kind == "PrometheusRule") | [.spec.groups[].rules[]] as $r
     | ($r | map(.alert)) == ["PullSecretInjectorDown", "PullSecretInjectorNotReady", "PullSecretInjectorCertificateExpiresSoon",
                             "PullSecretInjectorCertificateReloadFailing", "PullSecretInjectorCertificateNotTrusted",
                             "PullSecretInjectorTLSHandshakesRefused", "PullSecretInjectorWatchErrors"]
       and ($r | all(.expr | contains("job=\"" + $rel + "-metrics\"")))
       and ($r[0].labels.severity == "critical")
       and ($r[2].expr | contains("< 1209600"))' --arg rel "$REL"
  check_jq "HA profile: the Grafana dashboard is a ConfigMap with the sidecar's label (grafana_dashboard: \"1\") and folder annotation, holding dashboards/pullsecret-injector.json as shipped" "$F" \
    '[.[] | select(.kind == "ConfigMap" and .metadata.labels.grafana_dashboard != null)] as $cm
     | ($cm | length == 1)
       and $cm[0].metadata.name == ($rel + "-dashboard") and $cm[0].metadata.namespace == $ns
       and $cm[0].metadata.labels.grafana_dashboard == "1"
       and $cm[0].metadata.annotations.grafana_folder == "Kubernetes"
       and ($cm[0].data["pullsecret-injector.json"] | fromjson) == $dashboard[0]
       and ($dashboard[0].templating.list | map(.name)) == ["datasource", "namespace"]' \
    --arg rel "$REL" --arg ns "$DRY_NS" --slurpfile dashboard "$CHART/dashboards/pullsecret-injector.json"
  server_validate "HA profile" "$F" "$DRY_NS"
fi

# The dashboard for a sidecar with its own label, in its own namespace.
if render dash "$PREFIX-d" "$DRY_NS" --set metrics.grafanaDashboard.enabled=true \
  --set metrics.grafanaDashboard.label=team.example.com/dashboard --set metrics.grafanaDashboard.labelValue=injector \
  --set metrics.grafanaDashboard.namespace=monitoring >"$WORK/last.log" 2>&1; then
  check_jq "grafanaDashboard: label, value and namespace as configured" "$WORK/dash.json" \
    '.[] | select(.kind == "ConfigMap" and .metadata.name == ($rel + "-dashboard"))
     | .metadata.namespace == "monitoring" and .metadata.labels["team.example.com/dashboard"] == "injector"
       and .metadata.labels.grafana_dashboard == null and .metadata.annotations == null' --arg rel "$PREFIX-d"
else
  fail "render: grafanaDashboard with its own label and namespace" "$(tail -n 3 "$WORK/last.log")"
fi
check_fails "schema rejects a dashboard label that is no label key" "grafanaDashboard" \
  "$HELM" template schema-check "$CHART" -n schema-check "${KV[@]}" --set 'metrics.grafanaDashboard.label=not a label'

# Fail from the first moment, for deploys without hooks.
if render failnow "$PREFIX-fn" "$DRY_NS" --set webhook.failurePolicy=Fail --set webhook.failAfterRollout=false \
  >"$WORK/last.log" 2>&1; then
  check_jq "failAfterRollout=false: Fail rendered at once, no hook" "$WORK/failnow.json" \
    '(.[] | select(.kind == "MutatingWebhookConfiguration") | .webhooks[0].failurePolicy == "Fail")
     and ([.[] | select(.metadata.annotations["helm.sh/hook"] != null)] | length == 0)'
else
  fail "render: failAfterRollout=false" "$(tail -n 3 "$WORK/last.log")"
fi

# Ignore (the default) excludes only kube-system and the release namespace.
check_jq "default values: no Grafana dashboard ConfigMap" "$WORK/helm.json" \
  '[.[] | select(.kind == "ConfigMap" and (.metadata.name | endswith("-dashboard")))] | length == 0'
check_jq "failurePolicy Ignore: only kube-system and the release namespace excluded, no hook" "$WORK/helm.json" \
  '(.[] | select(.kind == "MutatingWebhookConfiguration") | .webhooks[0].namespaceSelector.matchExpressions[0].values == ["kube-system", $ns])
   and ([.[] | select(.metadata.annotations["helm.sh/hook"] != null)] | length == 0)' --arg ns "$DRY_NS"

# The controller's ClusterPullSecrets are deleted by a pre-delete hook while it still runs.
check_jq "controller with clusterPullSecrets: a pre-delete Job deletes exactly them (delete RBAC on those names only) and lists the others to warn about" "$WORK/mappings.json" \
  '(.[] | select(.kind == "Job" and .metadata.name == ($rel + "-delete-cps"))
      | .metadata.annotations["helm.sh/hook"] == "pre-delete"
        and .spec.template.spec.containers[0].args == ["chart-hook", "--timeout-seconds=210", "delete-cluster-pull-secrets", ($rel + "-corp")])
   and (.[] | select(.kind == "ClusterRole" and .metadata.name == ($rel + "-hook")) | .rules == [
        {apiGroups: ["pullsecret-injector.io"], resources: ["clusterpullsecrets"], resourceNames: [($rel + "-corp")],
         verbs: ["get", "list", "watch", "delete"]},
        {apiGroups: ["pullsecret-injector.io"], resources: ["clusterpullsecrets"], verbs: ["list"]},
        {apiGroups: ["events.k8s.io"], resources: ["events"], verbs: ["create"]}])' --arg rel "$PREFIX-m"

# Networking, webhook options and security context ids of 0.
if render net "$PREFIX-n" "$DRY_NS" --set hostNetwork=true --set ports.webhook=10250 --set ports.admin=10251 \
  --set securityContext.runAsGroup=0 --set securityContext.fsGroup=0 --set podDisruptionBudget.maxUnavailable=1 \
  --set image.tag=1.2.3 \
  --set-json 'webhook.matchConditions=[{"name":"not-a-mirror-pod","expression":"!has(object.metadata.annotations) || !(\"kubernetes.io/config.mirror\" in object.metadata.annotations)"}]' \
  >"$WORK/last.log" 2>&1; then
  F="$WORK/net.json"
  check_jq "hostNetwork: one pod per node, so one replica at a time is replaced" "$F" \
    '.[] | select(.kind == "Deployment") | .spec.strategy.rollingUpdate == {maxUnavailable: 1, maxSurge: 0}'
  check_jq "hostNetwork: pods on the node network, webhook and admin on the given ports" "$F" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec
     | .hostNetwork == true and .dnsPolicy == "ClusterFirstWithHostNet"
       and (.containers[0].ports | map({(.name): .containerPort}) | add) == {webhook: 10250, admin: 10251}
       and (.containers[0].env | any(.name == "PULLSECRET_INJECTOR_LISTEN" and .value == "0.0.0.0:10250"))
       and (.containers[0].env | any(.name == "PULLSECRET_INJECTOR_ADMIN_LISTEN" and .value == "0.0.0.0:10251"))'
  check_jq "runAsGroup 0 and fsGroup 0 are honoured" "$F" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec.securityContext | .runAsGroup == 0 and .fsGroup == 0'
  check_jq "matchConditions are passed to the webhook; PDB by maxUnavailable; version label from the image tag" "$F" \
    '(.[] | select(.kind == "MutatingWebhookConfiguration") | .webhooks[0].matchConditions[0].name == "not-a-mirror-pod")
     and (.[] | select(.kind == "PodDisruptionBudget") | .spec.maxUnavailable == 1 and .spec.minAvailable == null)
     and (.[] | select(.kind == "Deployment") | .spec.template.metadata.labels["app.kubernetes.io/version"] == "1.2.3")'
  server_validate "hostNetwork and matchConditions" "$F" "$DRY_NS"
else
  fail "render: hostNetwork, ports, matchConditions" "$(tail -n 3 "$WORK/last.log")"
fi

# A single replica gets no PodDisruptionBudget (it would block every drain).
if render single "$PREFIX-1" "$DRY_NS" --set replicaCount=1 >"$WORK/last.log" 2>&1; then
  check_jq "replicaCount=1: no PodDisruptionBudget" "$WORK/single.json" '[.[] | select(.kind == "PodDisruptionBudget")] | length == 0'
else
  fail "render: replicaCount=1" "$(tail -n 3 "$WORK/last.log")"
fi

# ---------------------------------------------------------------------------------------------
say ""
say "== documented options (each claim of the chart README that helm template can show)"

APP_VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$CHART/Chart.yaml")
REL="$PREFIX-o"
DIGEST="sha256:$(printf '0123456789abcdef%.0s' 1 2 3 4)"
mwc_of() { jq '.[] | select(.kind == "MutatingWebhookConfiguration") | .webhooks[0]' "$1"; }

if "$HELM" show crds "$CHART" >"$WORK/crds.yaml" 2>"$WORK/last.log"; then
  crd_names=$(grep -E '^  name: ' "$WORK/crds.yaml" | sort | tr -d ' ' | paste -sd ' ' -)
  if [ "$crd_names" = "name:clusterpullsecrets.pullsecret-injector.io name:pullsecretrules.pullsecret-injector.io" ]; then
    pass "crds/: PullSecretRule and ClusterPullSecret CRDs ship with the chart"
  else
    fail "crds/: PullSecretRule and ClusterPullSecret CRDs ship with the chart" "found: $crd_names"
  fi
else
  fail "helm show crds" "$(tail -n 3 "$WORK/last.log")"
fi

if render opts "$REL" "$DRY_NS" \
  --set-json 'webhook.excludedNamespaces=["team-x","team-y"]' \
  --set-json 'webhook.extraObjectSelectorExpressions=[{"key":"team","operator":"In","values":["a"]}]' \
  --set-json 'webhook.extraNamespaceSelectorExpressions=[{"key":"registry","operator":"Exists"}]' \
  --set webhook.caBundle=Q0EtQlVORExF --set metrics.service.enabled=false \
  --set image.repository=registry.example.com/psi --set image.digest="$DIGEST" >"$WORK/last.log" 2>&1; then
  mwc_of "$WORK/opts.json" >"$WORK/opts-webhook.json"
  check_jq "excludedNamespaces join kube-system and the release namespace" "$WORK/opts-webhook.json" \
    '.namespaceSelector.matchExpressions | any(.key == "kubernetes.io/metadata.name" and .operator == "NotIn"
       and (.values | index("kube-system") != null and index($ns) != null and index("team-x") != null and index("team-y") != null))' \
    --arg ns "$DRY_NS"
  check_jq "extra selector expressions are ANDed with the built-in ones" "$WORK/opts-webhook.json" \
    '(.objectSelector.matchExpressions | any(. == {key: "team", operator: "In", values: ["a"]})
        and any(.key == "pullsecret-injector.io/inject"))
     and (.namespaceSelector.matchExpressions | any(. == {key: "registry", operator: "Exists"})
        and any(.key == "pullsecret-injector.io/inject"))'
  check_jq "webhook.caBundle overrides the CA from certificates" "$WORK/opts-webhook.json" \
    '.clientConfig.caBundle == "Q0EtQlVORExF"'
  check_jq "metrics.service.enabled=false: no -metrics Service" "$WORK/opts.json" \
    '[.[] | select(.kind == "Service" and (.metadata.name | endswith("-metrics")))] | length == 0'
  check_jq "image: repository, the chart's appVersion as tag, pinned by digest" "$WORK/opts.json" \
    '.[] | select(.kind == "Deployment") | .spec.template.spec.containers[0].image == ("registry.example.com/psi:" + $v + "@" + $d)' \
    --arg v "$APP_VERSION" --arg d "$DIGEST"
else
  fail "render: documented options" "$(tail -n 3 "$WORK/last.log")"
fi
check_jq "image: the default is pullsecret-injector:<appVersion>" "$WORK/helm.json" \
  '.[] | select(.kind == "Deployment") | .spec.template.spec.containers[0].image == ("pullsecret-injector:" + $v)' \
  --arg v "$APP_VERSION"

if render issuer "$REL" "$DRY_NS" --set certificates.mode=certManager --api-versions cert-manager.io/v1 \
  --set-json 'certificates.certManager.issuerRef={"name":"corp-ca","kind":"ClusterIssuer"}' >"$WORK/last.log" 2>&1; then
  check_jq "certManager issuerRef: no chart-made issuers, the serving Certificate uses the given one" "$WORK/issuer.json" \
    '([.[] | select(.kind == "Issuer")] | length == 0)
     and (.[] | select(.kind == "Certificate") | .spec.issuerRef.name == "corp-ca" and .spec.issuerRef.kind == "ClusterIssuer")'
else
  fail "render: certManager with issuerRef" "$(tail -n 3 "$WORK/last.log")"
fi

# The generated certificate lives certificates.helm.validityDays (3650 by default).
days_left() { openssl x509 -in "$1" -noout -enddate | sed 's/notAfter=//' | xargs -I{} date -d {} +%s |
  awk -v now="$(date +%s)" '{ printf "%d", ($1 - now) / 86400 }'; }
if [ -s "$WORK/tls.crt" ] && [ "$(days_left "$WORK/tls.crt")" -ge 3649 ] && [ "$(days_left "$WORK/ca.crt")" -ge 3649 ]; then
  pass "helm mode: CA and serving certificate valid for 3650 days by default"
else
  fail "helm mode: CA and serving certificate valid for 3650 days by default" \
    "days left: tls $(days_left "$WORK/tls.crt" 2>/dev/null), ca $(days_left "$WORK/ca.crt" 2>/dev/null)"
fi
if render short "$REL" "$DRY_NS" --set certificates.helm.validityDays=30 >"$WORK/last.log" 2>&1; then
  jq -r '.[] | select(.kind == "Secret") | .data["tls.crt"]' "$WORK/short.json" | openssl base64 -d -A >"$WORK/short.crt"
  left=$(days_left "$WORK/short.crt" 2>/dev/null || echo 0)
  if [ "$left" -ge 29 ] && [ "$left" -le 30 ]; then
    pass "certificates.helm.validityDays=30: a 30-day serving certificate"
  else
    fail "certificates.helm.validityDays=30: a 30-day serving certificate" "days left: $left"
  fi
  # helm template cannot look up the Secret: each render makes a new CA (documented).
  if [ "$(jq -r '.[] | select(.kind == "Secret") | .data["ca.crt"]' "$WORK/short.json")" != \
    "$(jq -r '.[] | select(.kind == "Secret") | .data["ca.crt"]' "$WORK/helm.json")" ]; then
    pass "helm template prints a fresh CA each time"
  else
    fail "helm template prints a fresh CA each time" "two renders share a CA"
  fi
else
  fail "render: certificates.helm.validityDays=30" "$(tail -n 3 "$WORK/last.log")"
fi

if render zero "$REL" "$DRY_NS" --set replicaCount=0 --set webhook.url="$WEBHOOK_URL" >"$WORK/last.log" 2>&1; then
  check_jq "replicaCount=0 with webhook.url: no pods, no PDB, the webhook calls the URL" "$WORK/zero.json" \
    '(.[] | select(.kind == "Deployment") | .spec.replicas == 0)
     and ([.[] | select(.kind == "PodDisruptionBudget")] | length == 0)
     and (.[] | select(.kind == "MutatingWebhookConfiguration") | .webhooks[0].clientConfig | .url == $url and .service == null)' \
    --arg url "$WEBHOOK_URL"
else
  fail "render: replicaCount=0 with webhook.url" "$(tail -n 3 "$WORK/last.log")"
fi

# Creates a namespace whose pods get a node selector no node matches (PodNodeSelector).
unschedulable_namespace() {
  "$KUBECTL" create namespace "$1" &&
    "$KUBECTL" annotate namespace "$1" \
      scheduler.alpha.kubernetes.io/node-selector=e2e.pullsecret-injector.io/no-node=true
}

# ---------------------------------------------------------------------------------------------
say ""
say "== Kubernetes versions (kubeVersion and the fields of recent releases)"

# Fields an apiserver without them would drop without a word (a webhook without its
# matchConditions receives every pod, mirror pods included). Each exists on the oldest release
# the chart accepts, so they render on every version it accepts, and it renders nothing below.
VERSION_FIELDS='(.[] | select(.kind == "PodDisruptionBudget") | .spec.unhealthyPodEvictionPolicy == "AlwaysAllow")
  and (.[] | select(.kind == "Deployment") | .spec.template.spec.topologySpreadConstraints[0].matchLabelKeys == ["pod-template-hash"])
  and (.[] | select(.kind == "MutatingWebhookConfiguration") | .webhooks[0].matchConditions[0].name == "not-a-mirror-pod")'
VERSION_VALUES=(--set replicaCount=2 --set topologySpread.enabled=true
  --set-json 'webhook.matchConditions=[{"name":"not-a-mirror-pod","expression":"!has(object.metadata.annotations) || !(\"kubernetes.io/config.mirror\" in object.metadata.annotations)"}]')
VREL="$PREFIX-v"
CHART_FLOOR=$(sed -n 's/^kubeVersion: ">=\([0-9.]*\)-0"$/v\1/p' "$CHART/Chart.yaml")
check "kubeVersion is the oldest release the tests run on ($K8S_OLDEST)" \
  test "$CHART_FLOOR" = "${K8S_OLDEST%.*}.0"
check_fails "kubeVersion: Kubernetes 1.31 is refused, naming the versions the chart needs" \
  '>=1\.32\.0-0.*incompatible|incompatible.*>=1\.32\.0-0' \
  "$HELM" template "$VREL" "$CHART" -n "$DRY_NS" --kube-version v1.31.14
# The floor, a vendor's build of it (a pre-release in semver terms), the last release without
# the kubelet's cached-image check, and today's.
for kube in v1.32.0 v1.32.9-eks-1a2b3c4 v1.34.0 v1.37.0; do
  if render "kube-$kube" "$VREL" "$DRY_NS" "${VERSION_VALUES[@]}" --kube-version "$kube" >"$WORK/last.log" 2>&1; then
    check_jq "Kubernetes $kube: PDB unhealthyPodEvictionPolicy, spread matchLabelKeys, webhook matchConditions rendered" \
      "$WORK/kube-$kube.json" "$VERSION_FIELDS"
  else
    fail "render for Kubernetes $kube" "$(tail -n 3 "$WORK/last.log")"
  fi
done
# The cluster's apiserver keeps all three (one that lacked a field, or had its feature off,
# would drop it from what it stores).
if needs_cluster "Kubernetes ${KUBE_VERSION}: the apiserver keeps the fields of recent releases" &&
  render kube-server "$VREL" "$DRY_NS" "${VERSION_VALUES[@]}" >"$WORK/last.log" 2>&1; then
  jq '{apiVersion: "v1", kind: "List", items: [.[] | select(.kind == "PodDisruptionBudget"
        or .kind == "Deployment" or .kind == "MutatingWebhookConfiguration")]}' \
    "$WORK/kube-server.json" >"$WORK/kube-server.list.json"
  if "$KUBECTL" apply --dry-run=server --validate=strict -o json -f "$WORK/kube-server.list.json" \
    2>"$WORK/last.log" | jq '.items' >"$WORK/kube-server.stored.json"; then
    check_jq "Kubernetes ${KUBE_VERSION}: the apiserver keeps the fields of recent releases" \
      "$WORK/kube-server.stored.json" "$VERSION_FIELDS"
  else
    fail "Kubernetes ${KUBE_VERSION}: the apiserver keeps the fields of recent releases" \
      "$(tail -n 3 "$WORK/last.log")"
  fi
elif [ "$CLUSTER" = 1 ]; then
  fail "render for the cluster's Kubernetes ${KUBE_VERSION}" "$(tail -n 3 "$WORK/last.log")"
fi

# ---------------------------------------------------------------------------------------------
say ""
say "== NOTES.txt (helm install --dry-run)"

# notes NAME [helm args...]: the NOTES helm install --dry-run prints, into $WORK/NAME.notes.
notes() {
  local name=$1; shift
  "$HELM" install "$PREFIX-notes" "$CHART" -n "$DRY_NS" --dry-run=client "$@" >"$WORK/$name.out" 2>&1 &&
    sed -n '/^NOTES:/,$p' "$WORK/$name.out" >"$WORK/$name.notes"
}
# notes_say NAME LABEL PATTERN [present|absent]
notes_say() {
  local name=$1 label=$2 pattern=$3 want=${4:-present} found
  if grep -Eq -- "$pattern" "$WORK/$name.notes"; then found=present; else found=absent; fi
  if [ "$found" = "$want" ]; then pass "$label"; else
    fail "$label" "/$pattern/ is $found in NOTES" "$(head -c 600 "$WORK/$name.notes")"; fi
}

# A minimal CRD standing in for one of the Prometheus operator's (a dry-run install needs the
# kind to be known); removed at the end.
standin_crd() {
  local kind=$1 singular plural crd
  singular=$(printf '%s' "$kind" | tr '[:upper:]' '[:lower:]')
  plural="${singular}s"
  crd="$plural.monitoring.coreos.com"
  "$KUBECTL" get crd "$crd" >/dev/null 2>&1 && return 0
  jq -n --arg crd "$crd" --arg kind "$kind" --arg singular "$singular" --arg plural "$plural" '{
    apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition", metadata: {name: $crd},
    spec: {group: "monitoring.coreos.com", scope: "Namespaced",
           names: {kind: $kind, plural: $plural, singular: $singular},
           versions: [{name: "v1", served: true, storage: true,
                       schema: {openAPIV3Schema: {type: "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}' |
    "$KUBECTL" apply -f - >"$WORK/last.log" 2>&1 || { fail "stand-in CRD $crd" "$(tail -n 3 "$WORK/last.log")"; return 1; }
  CREATED_CRDS+=("$crd")
  "$KUBECTL" wait --for=condition=Established --timeout=60s "crd/$crd" >/dev/null 2>&1
}

if ! needs_cluster "NOTES.txt (helm install --dry-run needs a cluster)"; then
  :
else
  standin_crd ServiceMonitor || true
  if attempt "NOTES: HA profile with extra selectors" notes ha -f "$CHART/ci/ha-values.yaml" \
    --set-json 'webhook.extraNamespaceSelectorExpressions=[{"key":"team","operator":"Exists"}]'; then
    notes_say ha "NOTES: lists kube-node-lease and cert-manager among the excluded namespaces with Fail" \
      "kube-system, $DRY_NS, kube-public, kube-node-lease, cert-manager"
    notes_say ha "NOTES: mentions the extra namespace selector" "not matching webhook.extraNamespaceSelectorExpressions"
    notes_say ha "NOTES: Fail only once the Deployment has rolled out" "failurePolicy: Fail, once the Deployment has rolled out"
    notes_say ha "NOTES: does not claim every new Pod" "every new Pod" absent
  fi
  if attempt "NOTES: namespaced mode" notes nsmode --set 'namespaces={shop,billing}'; then
    notes_say nsmode "NOTES: namespaced mode names its namespaces" \
      "only the namespaces of namespaced mode, shop, billing, and there not in:"
    notes_say nsmode "NOTES: namespaced mode does not claim every namespace" "every namespace except" absent
  fi
  if attempt "NOTES: namespaces={} is cluster-wide" notes nsnone --set 'namespaces={}'; then
    notes_say nsnone "NOTES: namespaces={} says every namespace" "every namespace except:"
  fi
  if attempt "NOTES: NetworkPolicy without adminFrom and a ServiceMonitor" notes np \
    --set networkPolicy.enabled=true --set metrics.serviceMonitor.enabled=true; then
    notes_say np "NOTES: warns that Prometheus cannot scrape through the NetworkPolicy" \
      "WARNING: the NetworkPolicy admits no peer to the admin port"
  fi
  if attempt "NOTES: NetworkPolicy with adminFrom and a ServiceMonitor" notes npok \
    --set networkPolicy.enabled=true --set metrics.serviceMonitor.enabled=true \
    --set-json 'networkPolicy.adminFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]'; then
    notes_say npok "NOTES: no scrape warning when adminFrom admits Prometheus" "WARNING: the NetworkPolicy" absent
  fi
fi

# ---------------------------------------------------------------------------------------------
say ""
say "== helm install / upgrade / uninstall"

if needs_cluster "helm install, upgrade and uninstall"; then
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

    # CA rotation: a new CA and serving certificate, with the old CA still trusted.
    secret_key() { "$KUBECTL" -n "$NS" get secret "$SECRET" -o jsonpath="{.data.$1}" || true; }
    # The SHA-256 fingerprints of the certificates in a PEM file, one a line.
    fingerprints() {
      awk -v dir="$WORK" '/BEGIN CERTIFICATE/{n++} {print > (dir "/cert-" n ".pem")}' "$1"
      for cert in "$WORK"/cert-*.pem; do openssl x509 -in "$cert" -noout -fingerprint -sha256; done
      rm -f "$WORK"/cert-*.pem
    }
    if attempt "helm upgrade $REL (--reuse-values, certificates.helm.rotation=r1)" \
      "$HELM" upgrade "$REL" "$CHART" -n "$NS" --reuse-values --set certificates.helm.rotation=r1; then
      ca_new=$(secret_key 'ca\.crt')
      previous=$(secret_key 'previous-ca\.crt')
      if [ -n "$ca_new" ] && [ "$ca_new" != "$ca_before" ] && [ "$previous" = "$ca_before" ]; then
        pass "rotation: a new CA in ca.crt, the previous one kept as previous-ca.crt"
      else
        fail "rotation: a new CA in ca.crt, the previous one kept as previous-ca.crt" \
          "ca.crt changed: $([ "$ca_new" != "$ca_before" ] && echo yes || echo no); previous-ca.crt is the old CA: $([ "$previous" = "$ca_before" ] && echo yes || echo no)"
      fi
      "$KUBECTL" get mutatingwebhookconfiguration "$MWC" -o jsonpath='{.webhooks[0].clientConfig.caBundle}' |
        openssl base64 -d -A >"$WORK/bundle.pem"
      printf '%s' "$ca_new" | openssl base64 -d -A >"$WORK/ca-new.crt"
      printf '%s' "$ca_before" | openssl base64 -d -A >"$WORK/ca-old.crt"
      secret_key 'tls\.crt' | openssl base64 -d -A >"$WORK/tls-new.crt"
      expected=$(cat "$WORK/ca-new.crt" "$WORK/ca-old.crt" >"$WORK/both.pem" && fingerprints "$WORK/both.pem")
      if [ "$(fingerprints "$WORK/bundle.pem")" = "$expected" ] &&
        openssl verify -CAfile "$WORK/ca-new.crt" "$WORK/tls-new.crt" >/dev/null 2>&1; then
        pass "rotation: the caBundle trusts the new CA and the old one; the new certificate is the new CA's"
      else
        fail "rotation: the caBundle trusts the new CA and the old one; the new certificate is the new CA's" \
          "bundle: $(fingerprints "$WORK/bundle.pem" | paste -sd ' ' -)" "expected: $(printf '%s' "$expected" | paste -sd ' ' -)"
      fi
      if attempt "helm upgrade $REL (--reuse-values again)" \
        "$HELM" upgrade "$REL" "$CHART" -n "$NS" --reuse-values --set logLevel=info; then
        if [ "$(secret_key 'ca\.crt')" = "$ca_new" ]; then
          pass "rotation: a later upgrade with the same rotation value keeps the new CA"
        else
          fail "rotation: a later upgrade with the same rotation value keeps the new CA" "ca.crt changed again"
        fi
      fi
    fi

    # --no-hooks: with the controller the pre-delete hook Job runs the chart's image, which no
    # node here can run (the hooks run for real in the e2e scenarios on the node).
    if attempt "helm uninstall $REL" "$HELM" uninstall "$REL" -n "$NS" --no-hooks; then
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
if [ "$NOT_REQUESTED" -gt 0 ]; then
  say "chart: $PASSED passed, $FAILED failed (offline run: $NOT_REQUESTED cluster checks not requested)"
else
  say "chart: $PASSED passed, $FAILED failed"
fi
[ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]

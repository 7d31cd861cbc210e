{{/*
Names. Kubernetes names are at most 63 characters; the suffixes the chart adds (-tls, -ca,
-metrics, -selfsigned, -serving) fit in the 10 characters kept free here.
*/}}
{{- define "pullsecret-injector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 53 | trimSuffix "-" }}
{{- end }}

{{- define "pullsecret-injector.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 53 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 53 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 53 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pullsecret-injector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pullsecret-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pullsecret-injector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pullsecret-injector.labels" -}}
helm.sh/chart: {{ include "pullsecret-injector.chart" . }}
{{ include "pullsecret-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ include "pullsecret-injector.version" . | quote }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/part-of: pullsecret-injector
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The version the pods run: the image tag when one is set, else the chart's appVersion. */}}
{{- define "pullsecret-injector.version" -}}
{{- default .Chart.AppVersion .Values.image.tag | trunc 63 | trimAll "-_." }}
{{- end }}

{{/* Labels of the pods: the selector labels plus what tells them apart from other objects. */}}
{{- define "pullsecret-injector.podLabels" -}}
{{ include "pullsecret-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ include "pullsecret-injector.version" . | quote }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/part-of: pullsecret-injector
{{- end }}

{{/* The labels of the chart hooks' objects: those of the chart, another component. */}}
{{- define "pullsecret-injector.hookLabels" -}}
{{ include "pullsecret-injector.labels" . | replace "component: admission-webhook" "component: chart-hook" }}
{{- end }}

{{- define "pullsecret-injector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pullsecret-injector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pullsecret-injector.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- $digest := .Values.image.digest | default (include "pullsecret-injector.releaseDigest" .) }}
{{- if $digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag $digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret holding tls.crt and tls.key, mounted into the pods. */}}
{{- define "pullsecret-injector.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "external" }}
{{- .Values.certificates.external.secretName }}
{{- else }}
{{- printf "%s-tls" (include "pullsecret-injector.fullname" .) }}
{{- end }}
{{- end }}

{{/* The names the apiserver may use for the webhook Service, plus the user's extras. */}}
{{- define "pullsecret-injector.dnsNames" -}}
{{- $svc := include "pullsecret-injector.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- concat $names .Values.certificates.extraDNSNames | uniq | toJson }}
{{- end }}

{{/*
Converts a duration ("500ms", "5s", "1m30s", "1h") to whole seconds, rounding up.
*/}}
{{- define "pullsecret-injector.seconds" -}}
{{- $d := toString . }}
{{- if regexMatch "^[0-9]+ms$" $d }}
{{- div (add (trimSuffix "ms" $d | atoi) 999) 1000 }}
{{- else if regexMatch "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$" $d }}
{{- $h := regexFind "[0-9]+h" $d | trimSuffix "h" | atoi }}
{{- $m := regexFind "[0-9]+m" $d | trimSuffix "m" | atoi }}
{{- $s := regexFind "[0-9]+s" $d | trimSuffix "s" | atoi }}
{{- add (mul $h 3600) (mul $m 60) $s }}
{{- else }}
{{- fail (printf "pullsecret-injector: %q is not a duration like 500ms, 5s, 1m30s or 1h" $d) }}
{{- end }}
{{- end }}

{{/*
Stops the render with one line. `helm lint` turns `fail` into an [INFO] log line and carries
on, so the include of a template that cannot exist follows: under lint it fails too, quoting
the same message ("no template <message>").
*/}}
{{- define "pullsecret-injector.fail" -}}
{{- $message := printf "pullsecret-injector: %s" . }}
{{- fail $message }}
{{- include $message dict }}
{{- end }}

{{/*
Checks the combinations the schema cannot express. Included by every template that depends on
them, so `helm template`, `helm install` and `helm lint` stop with one clear message.
*/}}
{{- define "pullsecret-injector.validate" -}}
{{- $mode := .Values.certificates.mode }}
{{- if not (has $mode (list "helm" "certManager" "external")) }}
{{- include "pullsecret-injector.fail" (printf "certificates.mode must be one of helm, certManager or external (got %q)" $mode) }}
{{- end }}
{{- if eq $mode "external" }}
{{- if not .Values.certificates.external.secretName }}
{{- include "pullsecret-injector.fail" "certificates.mode=external needs certificates.external.secretName, the name of an existing kubernetes.io/tls Secret (tls.crt, tls.key) in the release namespace" }}
{{- end }}
{{- if not (or .Values.certificates.external.caBundle .Values.webhook.caBundle) }}
{{- include "pullsecret-injector.fail" "certificates.mode=external needs certificates.external.caBundle, the base64-encoded PEM of the CA that signed the Secret's certificate" }}
{{- end }}
{{- end }}
{{- if and (eq $mode "certManager") (not (.Capabilities.APIVersions.Has "cert-manager.io/v1")) }}
{{- include "pullsecret-injector.fail" "certificates.mode=certManager needs cert-manager, and this cluster does not serve cert-manager.io/v1: install cert-manager first (https://cert-manager.io/docs/installation/), or choose certificates.mode=helm. With helm template, pass --api-versions cert-manager.io/v1" }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- include "pullsecret-injector.fail" "serviceAccount.create=false needs serviceAccount.name, an existing ServiceAccount in the release namespace" }}
{{- end }}
{{- if and .Values.clusterPullSecrets (not .Values.controller.enabled) }}
{{- include "pullsecret-injector.fail" "clusterPullSecrets need controller.enabled=true: without the controller nothing copies their source Secrets, and a pod gets a ClusterPullSecret's targetName only where a Secret of that name already exists. Enable the controller, or create the copies and the ClusterPullSecrets yourself" }}
{{- end }}
{{- if and .Values.controller.auditInterval (not .Values.controller.enabled) }}
{{- fail "pullsecret-injector: controller.auditInterval needs controller.enabled (only the controller's Lease holder audits)" }}
{{- end }}
{{- if and .Values.controller.recoverStuckPods (not .Values.controller.enabled) }}
{{- fail "pullsecret-injector: controller.recoverStuckPods needs controller.enabled (only the controller's Lease holder recovers pods)" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- include "pullsecret-injector.fail" "metrics.serviceMonitor.enabled needs metrics.service.enabled" }}
{{- end }}
{{- $replicas := int .Values.replicaCount }}
{{- if and (eq $replicas 0) (not .Values.webhook.url) }}
{{- include "pullsecret-injector.fail" "replicaCount=0 leaves the webhook's Service without a pod to answer: only with webhook.url (a webhook served elsewhere) may it be 0" }}
{{- end }}
{{- if and (eq .Values.podAntiAffinity "hard") (lt $replicas 2) (not .Values.affinity) }}
{{- include "pullsecret-injector.fail" "podAntiAffinity=hard keeps replicas on different nodes and rolls them out one at a time (maxUnavailable 1): it needs replicaCount >= 2, or a rollout leaves no replica" }}
{{- end }}
{{- include "pullsecret-injector.validatePodDisruptionBudget" . }}
{{- if eq (int .Values.ports.webhook) (int .Values.ports.admin) }}
{{- include "pullsecret-injector.fail" (printf "ports.webhook and ports.admin must differ (both %d)" (int .Values.ports.webhook)) }}
{{- end }}
{{- $delay := include "pullsecret-injector.seconds" .Values.shutdownDelay | atoi }}
{{- $drain := include "pullsecret-injector.seconds" .Values.drainTimeout | atoi }}
{{- if le (int .Values.terminationGracePeriodSeconds) (add $delay $drain) }}
{{- include "pullsecret-injector.fail" (printf "terminationGracePeriodSeconds (%d) must exceed shutdownDelay + drainTimeout (%d s), or the kubelet kills the pod while it is still draining" (int .Values.terminationGracePeriodSeconds) (add $delay $drain)) }}
{{- end }}
{{- end }}

{{/*
A PodDisruptionBudget that lets a node drain evict at least one replica, and never none.
*/}}
{{- define "pullsecret-injector.validatePodDisruptionBudget" -}}
{{- $pdb := .Values.podDisruptionBudget }}
{{- $replicas := int .Values.replicaCount }}
{{- if and $pdb.enabled (gt $replicas 1) }}
{{- $min := $pdb.minAvailable }}
{{- $max := $pdb.maxUnavailable }}
{{- if and (kindIs "invalid" $min) (kindIs "invalid" $max) }}
{{- include "pullsecret-injector.fail" "podDisruptionBudget: set minAvailable or maxUnavailable (or enabled=false)" }}
{{- end }}
{{- $blocking := "" }}
{{- if kindIs "invalid" $max }}
{{- if kindIs "string" $min }}
{{- if ge (trimSuffix "%" $min | atoi) 100 }}{{ $blocking = printf "minAvailable %s" $min }}{{ end }}
{{- else if ge (int $min) $replicas }}
{{- $blocking = printf "minAvailable %d with replicaCount %d" (int $min) $replicas }}
{{- end }}
{{- else }}
{{- if kindIs "string" $max }}
{{- if le (trimSuffix "%" $max | atoi) 0 }}{{ $blocking = printf "maxUnavailable %s" $max }}{{ end }}
{{- else if le (int $max) 0 }}
{{- $blocking = "maxUnavailable 0" }}
{{- end }}
{{- end }}
{{- if $blocking }}
{{- include "pullsecret-injector.fail" (printf "podDisruptionBudget %s allows no eviction, so every node drain and cluster upgrade would hang: keep minAvailable below replicaCount (or maxUnavailable at 1 or more)" $blocking) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Namespaces the webhook never sees: kube-system and the release namespace always, the ones the
cluster needs to recover while no replica answers when failurePolicy is Fail, and the user's.
As JSON.
*/}}
{{- define "pullsecret-injector.excludedNamespaces" -}}
{{- $excluded := list "kube-system" .Release.Namespace }}
{{- if eq .Values.webhook.failurePolicy "Fail" }}
{{- $excluded = concat $excluded .Values.webhook.failExcludedNamespaces }}
{{- end }}
{{- concat $excluded .Values.webhook.excludedNamespaces | uniq | toJson }}
{{- end }}

{{/*
The namespaces of namespaced mode, as JSON: `namespaces` without empty names, so each way of
saying "none" goes back to cluster-wide: [] (--set-json 'namespaces=[]'), null
(--set namespaces=null) and {} (--set 'namespaces={}', which helm reads as [""]).
*/}}
{{- define "pullsecret-injector.namespaces" -}}
{{- without (.Values.namespaces | default list) "" | toJson }}
{{- end }}

{{/*
Whether the webhook starts with Ignore and a hook switches it to Fail after the rollout.
*/}}
{{- define "pullsecret-injector.failAfterRollout" -}}
{{- if and (eq .Values.webhook.failurePolicy "Fail") .Values.webhook.failAfterRollout (not .Values.webhook.url) }}true{{ end }}
{{- end }}

{{/*
The failurePolicy to render. With failAfterRollout: Fail only when the live configuration
already has it (an upgrade of a release whose hook has switched it), so an upgrade does not
drop back to Ignore; Ignore on install, until the post-install hook switches it.
*/}}
{{- define "pullsecret-injector.renderedFailurePolicy" -}}
{{- if include "pullsecret-injector.failAfterRollout" . }}
{{- $live := lookup "admissionregistration.k8s.io/v1" "MutatingWebhookConfiguration" "" (include "pullsecret-injector.fullname" .) }}
{{- $policy := "Ignore" }}
{{- range (($live | default dict).webhooks | default list) }}
{{- if and (eq .name $.Values.webhook.name) (eq .failurePolicy "Fail") }}{{ $policy = "Fail" }}{{ end }}
{{- end }}
{{- $policy }}
{{- else }}
{{- .Values.webhook.failurePolicy }}
{{- end }}
{{- end }}

{{/*
Whether the pods must each have a node of their own (hard anti-affinity, or the host's network
ports): then a rollout cannot add a pod first and replaces one at a time instead.
*/}}
{{- define "pullsecret-injector.onePodPerNode" -}}
{{- if and (not .Values.affinity) (eq .Values.podAntiAffinity "hard") }}true{{ end }}
{{- if .Values.hostNetwork }}true{{ end }}
{{- end }}

{{/*
The CA and serving certificate of certificates.mode=helm, as YAML {caCert, tlsCert, tlsKey,
previousCaCert, rotation}. An existing Secret from a previous install is reused as it is, so
the caBundle the apiserver trusts stays the same across upgrades. Otherwise - first install, or
certificates.helm.rotation set to a value the Secret does not record yet - a new ECDSA P-256 CA
and serving certificate are generated, and the CA they replace is kept as previousCaCert: the
caBundle trusts both, so the apiserver accepts the old certificate until the pods have read the
new one (the kubelet refreshes mounted Secrets within a minute or two). Include it once per
render (webhook.yaml): every call generates new keys.
*/}}
{{- define "pullsecret-injector.helmCertificates" -}}
{{- $secretName := include "pullsecret-injector.tlsSecretName" . }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $secretName | default dict }}
{{- $data := $existing.data | default dict }}
{{- $recorded := index (($existing.metadata | default dict).annotations | default dict) "pullsecret-injector.io/rotation" | default "" }}
{{- $rotation := .Values.certificates.helm.rotation | toString }}
{{- $complete := and (index $data "ca.crt") (index $data "tls.crt") (index $data "tls.key") }}
{{- if and $complete (or (not $rotation) (eq $rotation $recorded)) }}
caCert: {{ index $data "ca.crt" | b64dec | quote }}
tlsCert: {{ index $data "tls.crt" | b64dec | quote }}
tlsKey: {{ index $data "tls.key" | b64dec | quote }}
previousCaCert: {{ index $data "previous-ca.crt" | default "" | b64dec | quote }}
rotation: {{ $recorded | quote }}
{{- else }}
{{- $days := int .Values.certificates.helm.validityDays }}
{{- $ca := genCAWithKey (printf "%s-ca" (include "pullsecret-injector.fullname" .)) $days (genPrivateKey "ecdsa") }}
{{- $dns := include "pullsecret-injector.dnsNames" . | fromJsonArray }}
{{- $serving := genSignedCertWithKey (index $dns 2) .Values.certificates.extraIPAddresses $dns $days $ca (genPrivateKey "ecdsa") }}
caCert: {{ $ca.Cert | quote }}
tlsCert: {{ $serving.Cert | quote }}
tlsKey: {{ $serving.Key | quote }}
previousCaCert: {{ index $data "ca.crt" | default "" | b64dec | default (include "pullsecret-injector.liveCa" .) | quote }}
rotation: {{ $rotation | quote }}
{{- end }}
{{- end }}

{{/*
The first CA of the caBundle the live webhook configuration carries (PEM), or nothing: the
CA of the certificate the pods serve when the Secret is gone (deleted, or its data removed).
A new pair is then issued, and the caBundle keeps trusting this CA until the pods have read it.
*/}}
{{- define "pullsecret-injector.liveCa" -}}
{{- $live := lookup "admissionregistration.k8s.io/v1" "MutatingWebhookConfiguration" "" (include "pullsecret-injector.fullname" .) }}
{{- $bundle := "" }}
{{- range (($live | default dict).webhooks | default list) }}
{{- if eq .name $.Values.webhook.name }}{{ $bundle = .clientConfig.caBundle | default "" | b64dec }}{{ end }}
{{- end }}
{{- regexFind "-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----" $bundle }}
{{- end }}

{{/*
A hook Job running `pullsecret-injector chart-hook ARGS` as the hook ServiceAccount, with the
Deployment's image, pull secrets, placement and hardening. Args: dict of root, name, events,
args. A failed Job stays for `kubectl logs` until the next hook of its kind replaces it.
*/}}
{{- define "pullsecret-injector.hookJob" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $timeout := int $values.hooks.timeoutSeconds }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "pullsecret-injector.hookLabels" $root | nindent 4 }}
  annotations:
    helm.sh/hook: {{ .events }}
    helm.sh/hook-weight: "0"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  # One attempt, and the Job ends within hooks.timeoutSeconds + 60 s (the pod's scheduling and
  # image pull included): with the default 210 s that is 270 s, inside helm's 5-minute timeout.
  backoffLimit: 0
  activeDeadlineSeconds: {{ add $timeout 60 }}
  template:
    metadata:
      # Not the selector labels: the Services and the PodDisruptionBudget must not count it.
      labels:
        app.kubernetes.io/name: {{ include "pullsecret-injector.name" $root }}-chart-hook
        app.kubernetes.io/instance: {{ $root.Release.Name }}
        app.kubernetes.io/component: chart-hook
    spec:
      restartPolicy: Never
      serviceAccountName: {{ printf "%s-hook" (include "pullsecret-injector.fullname" $root) }}
      automountServiceAccountToken: true
      enableServiceLinks: false
      {{- with $values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        {{- range $key := list "runAsUser" "runAsGroup" }}
        {{- $id := index $values.securityContext $key }}
        {{- if not (kindIs "invalid" $id) }}
        {{ $key }}: {{ int64 $id }}
        {{- end }}
        {{- end }}
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: hook
          image: {{ include "pullsecret-injector.image" $root | quote }}
          imagePullPolicy: {{ $values.image.pullPolicy }}
          args:
            - chart-hook
            - --timeout-seconds={{ $timeout }}
            {{- toYaml .args | nindent 12 }}
          resources:
            requests:
              cpu: 10m
              memory: 32Mi
            limits:
              memory: 64Mi
          securityContext:
            runAsNonRoot: true
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            privileged: false
            capabilities:
              drop: ["ALL"]
            seccompProfile:
              type: RuntimeDefault
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

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
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/part-of: pullsecret-injector
app.kubernetes.io/managed-by: {{ .Release.Service }}
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
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
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
Checks the combinations the schema cannot express. Included by every template that depends on
them, so `helm template` and `helm install` stop with one clear message.
*/}}
{{- define "pullsecret-injector.validate" -}}
{{- $mode := .Values.certificates.mode }}
{{- if not (has $mode (list "helm" "certManager" "external")) }}
{{- fail (printf "pullsecret-injector: certificates.mode must be one of helm, certManager or external (got %q)" $mode) }}
{{- end }}
{{- if eq $mode "external" }}
{{- if not .Values.certificates.external.secretName }}
{{- fail "pullsecret-injector: certificates.mode=external needs certificates.external.secretName, the name of an existing kubernetes.io/tls Secret (tls.crt, tls.key) in the release namespace" }}
{{- end }}
{{- if not (or .Values.certificates.external.caBundle .Values.webhook.caBundle) }}
{{- fail "pullsecret-injector: certificates.mode=external needs certificates.external.caBundle, the base64-encoded PEM of the CA that signed the Secret's certificate" }}
{{- end }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "pullsecret-injector: serviceAccount.create=false needs serviceAccount.name, an existing ServiceAccount in the release namespace" }}
{{- end }}
{{- if and .Values.clusterPullSecrets (not .Values.controller.enabled) }}
{{- fail "pullsecret-injector: clusterPullSecrets need controller.enabled=true: without the controller nothing copies their source Secrets, and a pod gets a ClusterPullSecret's targetName only where a Secret of that name already exists. Enable the controller, or create the copies and the ClusterPullSecrets yourself" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "pullsecret-injector: metrics.serviceMonitor.enabled needs metrics.service.enabled" }}
{{- end }}
{{- $delay := include "pullsecret-injector.seconds" .Values.shutdownDelay | atoi }}
{{- $drain := include "pullsecret-injector.seconds" .Values.drainTimeout | atoi }}
{{- if le (int .Values.terminationGracePeriodSeconds) (add $delay $drain) }}
{{- fail (printf "pullsecret-injector: terminationGracePeriodSeconds (%d) must exceed shutdownDelay + drainTimeout (%d s), or the kubelet kills the pod while it is still draining" (int .Values.terminationGracePeriodSeconds) (add $delay $drain)) }}
{{- end }}
{{- end }}

{{/*
The CA and serving certificate of certificates.mode=helm, as YAML {caCert, tlsCert, tlsKey}.
An existing Secret from a previous install is reused as it is, so the caBundle the apiserver
trusts stays the same across upgrades. Otherwise a new ECDSA P-256 CA and serving certificate
are generated. Include it once per render (webhook.yaml): every call generates new keys.
*/}}
{{- define "pullsecret-injector.helmCertificates" -}}
{{- $secretName := include "pullsecret-injector.tlsSecretName" . }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $secretName }}
{{- $data := dict }}
{{- if $existing }}
{{- $data = $existing.data | default dict }}
{{- end }}
{{- if and (index $data "ca.crt") (index $data "tls.crt") (index $data "tls.key") }}
caCert: {{ index $data "ca.crt" | b64dec | quote }}
tlsCert: {{ index $data "tls.crt" | b64dec | quote }}
tlsKey: {{ index $data "tls.key" | b64dec | quote }}
{{- else }}
{{- $days := int .Values.certificates.helm.validityDays }}
{{- $ca := genCAWithKey (printf "%s-ca" (include "pullsecret-injector.fullname" .)) $days (genPrivateKey "ecdsa") }}
{{- $dns := include "pullsecret-injector.dnsNames" . | fromJsonArray }}
{{- $serving := genSignedCertWithKey (index $dns 2) .Values.certificates.extraIPAddresses $dns $days $ca (genPrivateKey "ecdsa") }}
caCert: {{ $ca.Cert | quote }}
tlsCert: {{ $serving.Cert | quote }}
tlsKey: {{ $serving.Key | quote }}
{{- end }}
{{- end }}

{{- /*
The image digest a released chart was published with (hack/release.sh writes it here). A
template, not a value: `helm upgrade --reuse-values` keeps the previous release's values, which
would pin the previous release's image; templates always come from the chart being installed.
Empty in a checkout. `image.digest` overrides it.
*/}}
{{- define "pullsecret-injector.releaseDigest" -}}
{{- end }}

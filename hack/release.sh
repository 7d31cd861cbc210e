#!/usr/bin/env bash
# One release of pullsecret-injector: the release binary and its image from the same daemonless
# path as `make image` (hack/image.sh), the image pushed as an OCI image index, signed with
# cosign, a CycloneDX SBOM of the binary's crates attached as a signed attestation, the chart
# packaged with the release's version and the published image's digest and pushed as an OCI
# artifact, the credential-providers image (the vendor plugins, credential-providers/) pushed and
# signed beside it, and SHA256SUMS of everything.
#
# Usage: hack/release.sh all VERSION REGISTRY     build, then publish (`make release`)
#        hack/release.sh build VERSION            this machine's platform only, no registry:
#                                                 binary archive and image tarball in DIST
#        hack/release.sh publish VERSION REGISTRY every platform built into DIST (the release
#                                                 workflow builds amd64 and arm64 on two runners)
#   VERSION   SemVer without a leading v, equal to Cargo.toml's version, with a CHANGELOG.md entry
#   REGISTRY  HOST[:PORT][/PATH]: the image goes to REGISTRY/pullsecret-injector:VERSION, the
#             plugins to REGISTRY/pullsecret-injector-credential-providers:VERSION, the chart to
#             oci://REGISTRY/charts/pullsecret-injector, version VERSION
# Environment:
#   COSIGN_KEY         a cosign private key file (cosign generate-key-pair; COSIGN_PASSWORD for
#                      its password), or COSIGN_KEYLESS=1 to sign with the ambient OIDC identity
#                      (the release workflow's)
#   DOCKER_CONFIG      registry credentials (config.json), for crane, cosign and helm alike
#   RELEASE_DIST       where artifacts go (default target/dist/VERSION)
#   CARGO_TARGET_DIR   as for cargo
# Registries on 127.0.0.1 or localhost are spoken to over plain HTTP, as crane and cosign do.
#
# Every check runs before anything is pushed: a dirty tree, a version that is not SemVer, does
# not match Cargo.toml or lacks a CHANGELOG entry, an image or chart of that version already in
# the registry, a registry that refuses access. Then the image goes up by digest alone, is
# signed and attested, the chart is pushed, and the image tag comes last, so a push refused on
# the way leaves no version behind that anyone could install. Errors are one `release: ...` line.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/tests/controlplane/build-tool.sh"
NAME=pullsecret-injector

die() { printf 'release: %s\n' "$*" >&2; exit 1; }
log() { printf '[release] %s\n' "$*" >&2; }
usage() { sed -n '9,24p' "${BASH_SOURCE[0]}" >&2; exit 2; }

COMMAND=${1:-}
VERSION=${2:-}
REGISTRY=${3:-}
case "$COMMAND" in
  all | publish) [ $# -eq 3 ] || usage ;;
  build) [ $# -eq 2 ] || usage ;;
  *) usage ;;
esac
REGISTRY=${REGISTRY%/}
DIST=${RELEASE_DIST:-$ROOT/target/dist/$VERSION}

# ---------------------------------------------------------------------------------------------
# Checks of the input, before anything is built or pushed

# SemVer 2.0 without build metadata ('+' is not allowed in an OCI tag).
semver='^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?$'
[[ $VERSION =~ $semver ]] ||
  die "version '$VERSION' is not SemVer (MAJOR.MINOR.PATCH[-PRERELEASE], no leading v, no +build)"

check_source() {
  git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 || die "$ROOT is not a git checkout"
  local dirty
  dirty=$(git -C "$ROOT" status --porcelain | head -n 3 | sed 's/^...//' | paste -sd ' ' -)
  [ -z "$dirty" ] || die "the work tree is not clean (${dirty}...): commit or stash first"
  local cargo_version
  cargo_version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
  [ "$cargo_version" = "$VERSION" ] ||
    die "Cargo.toml says version $cargo_version, not $VERSION: bump it (and Cargo.lock) and commit first"
  grep -q "^## \[$VERSION\]" "$ROOT/CHANGELOG.md" ||
    die "CHANGELOG.md has no '## [$VERSION]' entry"
}

platform_arch() {
  case "$(uname -m)" in
    x86_64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) die "unsupported machine $(uname -m)" ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# build: the binary and the image of this machine's platform

do_build() {
  check_source
  local arch revision out binary target_dir
  arch=$(platform_arch)
  revision=$(git -C "$ROOT" rev-parse --short=12 HEAD)
  out="$DIST/linux-$arch"
  rm -rf "$out"
  mkdir -p "$out"
  target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
  log "building the release binary $VERSION (revision $revision) for linux/$arch"
  (cd "$ROOT" && PULLSECRET_INJECTOR_REVISION=$revision \
    cargo build --release --locked --bin "$NAME" --bin credential-providers-copy \
      --bin jdcloud-jcr-credential-provider --bin huaweicloud-swr-credential-provider) ||
    die "cargo build --release failed"
  binary="$target_dir/release/$NAME"
  local said
  said=$("$binary" --version)
  [ "$said" = "$NAME $VERSION (revision $revision)" ] ||
    die "the binary says '$said', not '$NAME $VERSION (revision $revision)'"
  # The archive users download: the binary, its license and the changelog.
  local stage
  stage=$(mktemp -d)
  mkdir -p "$stage/$NAME-$VERSION-linux-$arch"
  install -m 0755 "$binary" "$stage/$NAME-$VERSION-linux-$arch/$NAME"
  cp "$ROOT/LICENSE" "$ROOT/CHANGELOG.md" "$stage/$NAME-$VERSION-linux-$arch/"
  tar -C "$stage" --owner=0 --group=0 --numeric-owner --sort=name --mtime=@0 \
    -czf "$out/$NAME-$VERSION-linux-$arch.tar.gz" "$NAME-$VERSION-linux-$arch"
  rm -rf "$stage"
  bash "$ROOT/hack/image.sh" --binary "$binary" "$out/image.tar" || die "hack/image.sh failed"
  bash "$ROOT/hack/image.sh" --credential-providers --binary "$target_dir/release" \
    "$out/credential-providers.tar" || die "hack/image.sh --credential-providers failed"
  log "built $out"
}

# ---------------------------------------------------------------------------------------------
# publish: everything in DIST to REGISTRY

# The registry's host, for the plain-HTTP rule of loopback registries.
registry_host() { echo "${REGISTRY%%/*}"; }
loopback() { case "$(registry_host)" in 127.0.0.1:* | 127.0.0.1 | localhost:* | localhost) return 0 ;; esac; return 1; }

# exists REF: 0 when the registry has it, 1 when it says it does not, fatal otherwise (refused).
exists() {
  local ref=$1 err
  if err=$("$CRANE" digest "$ref" 2>&1 >/dev/null); then
    return 0
  fi
  case "$err" in
    *MANIFEST_UNKNOWN* | *NAME_UNKNOWN* | *"404 Not Found"* | *"status code 404"*) return 1 ;;
  esac
  die "the registry refused to look up $ref: $(printf '%s' "$err" | tail -n 1)"
}

# The CycloneDX SBOM of the crates linked into the binary on Linux: the package's normal
# dependencies, transitively (no dev- or build-dependencies), from `cargo metadata`.
write_sbom() {
  local out=$1 created
  created=$(git -C "$ROOT" log -1 --format=%cI HEAD)
  (cd "$ROOT" && cargo metadata --locked --format-version 1 \
    --filter-platform x86_64-unknown-linux-gnu --filter-platform aarch64-unknown-linux-gnu) |
    jq --arg created "$created" --arg serial "$(printf '%s' "$NAME-$VERSION-$(git -C "$ROOT" rev-parse HEAD)" | sha256sum | cut -c1-32)" \
      -f "$ROOT/hack/sbom.jq" >"$out" || die "could not write the SBOM"
}

do_publish() {
  check_source
  [ -n "$REGISTRY" ] || usage
  [[ $REGISTRY =~ ^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*$ ]] ||
    die "registry '$REGISTRY' is not HOST[:PORT][/path] in lower case"
  local platforms=() tarball
  for tarball in "$DIST"/linux-*/image.tar; do
    [ -f "$tarball" ] && platforms+=("$tarball")
  done
  [ ${#platforms[@]} -gt 0 ] || die "nothing built in $DIST: run 'hack/release.sh build $VERSION' first"
  local sign_args=()
  if [ "${COSIGN_KEYLESS:-0}" = 1 ]; then
    sign_args=(--yes)
  elif [ -n "${COSIGN_KEY:-}" ]; then
    [ -r "$COSIGN_KEY" ] || die "COSIGN_KEY=$COSIGN_KEY is not a readable key file"
    # A key pair signs without a transparency log (a private release); verify with
    # --insecure-ignore-tlog, as RELEASING.md says.
    sign_args=(--key "$COSIGN_KEY" --use-signing-config=false --tlog-upload=false --yes)
  else
    die "no signing identity: set COSIGN_KEY=cosign.key (cosign generate-key-pair) or COSIGN_KEYLESS=1"
  fi
  command -v jq >/dev/null || die "jq is required (make tools)"

  CRANE=$(bash "$TOOLS" crane) || die "could not build crane"
  local cosign helm
  cosign=$(bash "$TOOLS" cosign) || die "could not build cosign"
  helm=$(bash "$TOOLS" helm) || die "could not build helm"
  local docker_config=${DOCKER_CONFIG:-$HOME/.docker}
  local helm_args=(--registry-config "$docker_config/config.json")
  loopback && helm_args+=(--plain-http)

  local image="$REGISTRY/$NAME" chart_repo="$REGISTRY/charts" plugins="$REGISTRY/$NAME-credential-providers"
  # Refused access and earlier releases stop the release here, before any push.
  exists "$image:$VERSION" && die "$image:$VERSION already exists: version $VERSION is released"
  exists "$plugins:$VERSION" && die "$plugins:$VERSION already exists: version $VERSION is released"
  exists "$chart_repo/$NAME:$VERSION" && die "chart $chart_repo/$NAME $VERSION already exists: version $VERSION is released"

  local work
  work=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  # The OCI image index of every platform, made locally so its digest is known before a push.
  local layout="$work/layout" manifests=()
  for tarball in "${platforms[@]}"; do manifests+=(-m "$tarball"); done
  "$CRANE" index append "$layout" "${manifests[@]}" >/dev/null 2>"$work/crane.log" ||
    die "could not make the image index: $(tail -n 1 "$work/crane.log")"
  local digest
  digest="sha256:$(sha256sum <"$layout/index.json" | cut -d' ' -f1)"
  # The same for the credential-providers image of every platform.
  local plugins_layout="$work/plugins-layout" plugin_manifests=()
  for tarball in "$DIST"/linux-*/credential-providers.tar; do
    [ -f "$tarball" ] && plugin_manifests+=(-m "$tarball")
  done
  [ ${#plugin_manifests[@]} -gt 0 ] || die "no credential-providers image in $DIST: run 'hack/release.sh build $VERSION' again"
  "$CRANE" index append "$plugins_layout" "${plugin_manifests[@]}" >/dev/null 2>"$work/crane.log" ||
    die "could not make the credential-providers image index: $(tail -n 1 "$work/crane.log")"
  local plugins_digest
  plugins_digest="sha256:$(sha256sum <"$plugins_layout/index.json" | cut -d' ' -f1)"
  write_sbom "$DIST/$NAME-$VERSION.cdx.json"

  # The chart: the release's version, the published image pinned by digest.
  local chart="$work/chart/$NAME"
  mkdir -p "$work/chart"
  cp -R "$ROOT/charts/$NAME" "$chart"
  awk -v repo="$image" '
    /^[^ #]/ { in_image = ($0 == "image:") }
    in_image && /^  repository:/ { print "  repository: " repo; next }
    in_image && /^  tag:/ { print "  tag: \"\""; next }
    { print }' "$ROOT/charts/$NAME/values.yaml" >"$chart/values.yaml"
  # The digest in a template, not a value: `helm upgrade --reuse-values` keeps the previous
  # release's values (templates/_release.tpl says more).
  printf '{{- define "pullsecret-injector.releaseDigest" -}}%s{{- end }}\n' "$digest" \
    >"$chart/templates/_release.tpl"
  "$helm" package "$chart" --version "$VERSION" --app-version "$VERSION" -d "$DIST" >/dev/null ||
    die "helm package failed"
  local rendered
  rendered=$("$helm" template "$NAME" "$DIST/$NAME-$VERSION.tgz" --show-only templates/deployment.yaml |
    sed -n 's/^ *image: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' | head -n 1)
  [ "$rendered" = "$image:$VERSION@$digest" ] ||
    die "the packaged chart's image is '$rendered', not '$image:$VERSION@$digest'"

  log "pushing the image index $image@$digest"
  "$CRANE" push --index "$layout" "$image@$digest" >/dev/null 2>"$work/crane.log" ||
    die "the registry refused the image push: $(tail -n 1 "$work/crane.log")"
  log "signing $image@$digest and attaching the SBOM"
  "$cosign" sign "${sign_args[@]}" "$image@$digest" >"$work/cosign.log" 2>&1 ||
    die "cosign sign failed: $(tail -n 1 "$work/cosign.log")"
  "$cosign" attest "${sign_args[@]}" --type cyclonedx --predicate "$DIST/$NAME-$VERSION.cdx.json" \
    "$image@$digest" >"$work/cosign.log" 2>&1 ||
    die "cosign attest failed: $(tail -n 1 "$work/cosign.log")"
  log "pushing and signing the credential-providers image $plugins@$plugins_digest"
  "$CRANE" push --index "$plugins_layout" "$plugins@$plugins_digest" >/dev/null 2>"$work/crane.log" ||
    die "the registry refused the credential-providers image push: $(tail -n 1 "$work/crane.log")"
  "$cosign" sign "${sign_args[@]}" "$plugins@$plugins_digest" >"$work/cosign.log" 2>&1 ||
    die "cosign sign failed: $(tail -n 1 "$work/cosign.log")"
  log "pushing the chart to oci://$chart_repo"
  "$helm" push "$DIST/$NAME-$VERSION.tgz" "oci://$chart_repo" "${helm_args[@]}" >"$work/helm.log" 2>&1 ||
    die "the registry refused the chart push: $(tail -n 1 "$work/helm.log")"
  "$CRANE" tag "$plugins@$plugins_digest" "$VERSION" >/dev/null 2>"$work/crane.log" ||
    die "the registry refused the tag $VERSION: $(tail -n 1 "$work/crane.log")"
  "$CRANE" tag "$image@$digest" "$VERSION" >/dev/null 2>"$work/crane.log" ||
    die "the registry refused the tag $VERSION: $(tail -n 1 "$work/crane.log")"

  printf '%s@%s\n' "$image" "$digest" >"$DIST/image.txt"
  printf '%s@%s\n' "$plugins" "$plugins_digest" >"$DIST/credential-providers-image.txt"
  # What a GitHub release offers, side by side, and their checksums.
  cp "$DIST"/linux-*/*.tar.gz "$DIST/"
  (cd "$DIST" && sha256sum -- *.tar.gz *.tgz *.cdx.json >SHA256SUMS)
  log "released $VERSION: image $image:$VERSION@$digest, chart oci://$chart_repo/$NAME $VERSION"
  log "credential provider plugins: $plugins:$VERSION@$plugins_digest"
  log "artifacts and SHA256SUMS in $DIST"
}

case "$COMMAND" in
  build) do_build ;;
  publish) do_publish ;;
  all)
    do_build
    do_publish
    ;;
esac

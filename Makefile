# The two commands of the README: `make run` (the main job) and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
STAMP := .cache/installed.stamp

.PHONY: run test install lint crds manifests bench clean

$(STAMP): pyproject.toml tests/models/tiny-model/pyproject.toml scripts/install-system-packages.sh
	bash scripts/install-system-packages.sh
	$(PIP) install -q --disable-pip-version-check -e '.[test]' -e tests/models/tiny-model
	mkdir -p .cache && touch $(STAMP)

install: $(STAMP)

## the operator against the current kube context; with no cluster, the offline renderer
run:
	$(PIP) install -q --disable-pip-version-check -e .
	@if deep-platform check; then exec deep-platform run; \
	else echo "no cluster with the CRDs: rendering examples/ offline instead" >&2; \
	     deep-platform render -f examples/; fi

lint: install
	ruff check operator tests bench
	mypy

## lint, type-check and the whole test suite: e2e tests on a real API server (KUBECONFIG, else
## ../shared/k8s started by the tests, else skipped), the integration tests on the emulator and,
## where ../shared/k8s is present, on that real server too
DEEP_TEST_SERVER ?= $(if $(or $(DEEP_K8S_DIR),$(wildcard ../shared/k8s/up.sh)),real,emulator)
test: install lint
	DEEP_TEST_SERVER=$(DEEP_TEST_SERVER) $(PYTHON) -m pytest -q

crds:
	deep-platform crds -o crds/
	bash scripts/render-manifests.sh

## the chart's CRD copies and manifests/, rendered from the chart (tests/chart fail on drift)
manifests:
	bash scripts/render-manifests.sh

bench: install
	$(PYTHON) bench/run_all.py

clean:
	rm -rf .cache .pytest_cache .mypy_cache .ruff_cache

#!/usr/bin/env bash
# Regenerate what is derived from the code and the chart (tests/chart fail when these drift):
#   charts/deep-platform/crds/  copies of the generated crds/
#   manifests/                  the chart rendered with default values, for `kubectl apply -k manifests/`
# `--out DIR` writes the manifests into DIR only (the drift test compares that with manifests/).
# Uses the official helm 4 binary, fetched once into .cache/tools (tests/chart/tools.py).
set -euo pipefail
cd "$(dirname "$0")/.."

out=manifests
if [[ "${1:-}" == "--out" ]]; then
  out="$2"
else
  rm -f charts/deep-platform/crds/*.yaml
  cp crds/*.yaml charts/deep-platform/crds/
fi

helm="$(python3 -c 'from tests.chart import tools; print(tools.helm(4))')"
release=deep-platform
namespace=deep-platform
header="# Rendered from charts/deep-platform with default values by scripts/render-manifests.sh; do not edit."

mkdir -p "$out"
{
  echo "$header"
  "$helm" template "$release" charts/deep-platform --namespace "$namespace" \
    --set namespace.create=true --show-only templates/namespace.yaml
} > "$out/namespace.yaml"
{
  echo "$header"
  "$helm" template "$release" charts/deep-platform --namespace "$namespace" --include-crds
} > "$out/deep-platform.yaml"
cat > "$out/kustomization.yaml" <<KUSTOMIZATION
$header
# kubectl apply -k manifests/   (or point Argo CD at this folder)
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - namespace.yaml
  - deep-platform.yaml
KUSTOMIZATION
echo "rendered $out/"

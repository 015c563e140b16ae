#!/usr/bin/env bash
# Builds the module and shows the seeds' walkthrough (istio.io "Enforce authorization
# policies") decided by the module in the Wasmtime harness and by the native engine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
HARNESS="${CARGO_TARGET_DIR:-target}/release/authz-harness"
./build.sh >/dev/null
H="$HARNESS"
WASM=dist/authz_plugin.wasm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/ztunnel.yaml" <<'YAML'
mode: ztunnel
workloads:
- {name: productpage-v1, namespace: default, serviceAccount: bookinfo-productpage, labels: {app: productpage}}
YAML
cat >"$work/waypoint.yaml" <<'YAML'
mode: waypoint
waypoint: {name: waypoint, namespace: default}
services:
- {name: productpage, namespace: default, hosts: [productpage.default.svc.cluster.local], addresses: [10.96.0.10], ports: [9080]}
YAML
case_file() { # name principal [method]
  if [ -n "${3:-}" ]; then
    printf 'source: {principal: "spiffe://cluster.local/%s", address: 10.0.0.7}\ndestination: {address: 10.96.0.10, port: 9080}\nhttp: {method: %s, path: /productpage, host: "productpage:9080"}\n' "$2" "$3" >"$work/$1.yaml"
  else
    printf 'source: {principal: "spiffe://cluster.local/%s", address: 10.0.0.7}\ndestination: {port: 9080}\n' "$2" >"$work/$1.yaml"
  fi
}
step() { printf '\n\033[1m== %s\033[0m\n' "$1"; }

# The walkthrough as a platform engineer runs it: the cluster (kubectl get ... -o yaml) in, each
# call walked hop by hop through ambient (waypoint at Layer 7, destination ztunnel at Layer 4).
IA="${CARGO_TARGET_DIR:-target}/release/istio-authz"
P=policies/bookinfo
sim() { "$IA" simulate --from "$1" --to productpage:9080 "${@:3}" --cluster $2 || true; }
CURL=default/curl-6c7d8b9f5-klmno
step "istio-authz: the Layer 4 policy; curl calls productpage and the destination ztunnel refuses it"
sim $CURL "$P/cluster/bookinfo.yaml $P/productpage-ztunnel.yaml" --path /productpage
WP="$P/cluster/bookinfo.yaml $P/cluster/waypoint.yaml $P/productpage-ztunnel.yaml $P/productpage-waypoint.yaml"
step "istio-authz: a waypoint and the Layer 7 policy; curl's GET passes the waypoint, then the ztunnel (which sees the waypoint) refuses it"
sim $CURL "$WP" --path /productpage
step "istio-authz lint finds that mistake before it is applied"
"$IA" lint --cluster $WP || true
step "istio-authz: the ztunnel policy updated to admit the waypoint; curl's DELETE is refused at the waypoint"
sim $CURL "$WP $P/productpage-ztunnel-with-waypoint.yaml" --method DELETE --path /productpage
step "istio-authz: ... and curl's GET goes through"
sim $CURL "$WP $P/productpage-ztunnel-with-waypoint.yaml" --path /productpage

# The same decisions, one proxy at a time, by the module itself in the Wasmtime harness.

step "Layer 4 policy productpage-ztunnel at the destination ztunnel: the gateway may connect"
case_file gw ns/default/sa/bookinfo-gateway-istio
$H check --wasm $WASM --config "$work/ztunnel.yaml" --policy-file policies/bookinfo/productpage-ztunnel.yaml --case "$work/gw.yaml"

step "... and curl is refused (kubectl exec deploy/curl -- curl ... => exit code 56)"
case_file curl ns/default/sa/curl
$H check --wasm $WASM --config "$work/ztunnel.yaml" --policy-file policies/bookinfo/productpage-ztunnel.yaml --case "$work/curl.yaml"

step "Layer 7 policy productpage-waypoint at the waypoint: curl's DELETE => RBAC: access denied"
case_file del ns/default/sa/curl DELETE
$H check --wasm $WASM --config "$work/waypoint.yaml" --policy-file policies/bookinfo/productpage-waypoint.yaml --case "$work/del.yaml"

step "reviews-v1's GET => RBAC: access denied"
case_file rev ns/default/sa/bookinfo-reviews GET
$H check --wasm $WASM --config "$work/waypoint.yaml" --policy-file policies/bookinfo/productpage-waypoint.yaml --case "$work/rev.yaml"

step "curl's GET passes the waypoint ..."
case_file get ns/default/sa/curl GET
$H check --wasm $WASM --config "$work/waypoint.yaml" --policy-file policies/bookinfo/productpage-waypoint.yaml --case "$work/get.yaml"

step "... and the destination ztunnel, which sees the waypoint's identity, admits it once the policy lists the waypoint"
case_file wp ns/default/sa/waypoint
$H check --wasm $WASM --config "$work/ztunnel.yaml" --policy-file policies/bookinfo/productpage-ztunnel-with-waypoint.yaml --case "$work/wp.yaml"

step "Every fixture, through the module and the native engine"
$H replay --wasm $WASM tests/ | tail -n 3

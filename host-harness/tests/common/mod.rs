//! What the harness's integration tests share: the seeds' principals, and Envoy with the module
//! (or a skip when either is missing).

// Each test file uses its own part of this module.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use authz_envoy::bootstrap::{EnvoySpec, ListenerKind, Upstream};
use authz_envoy::{wasm_or_skip, Envoy, TestEnv};

/// The principals of the seeds' callers as AuthorizationPolicy names them (no `spiffe://`);
/// the Envoy driver issues their certificates.
pub const CURL: &str = "cluster.local/ns/default/sa/curl";
pub const REVIEWS: &str = "cluster.local/ns/default/sa/bookinfo-reviews";
pub const GATEWAY: &str = "cluster.local/ns/default/sa/bookinfo-gateway-istio";
pub const PROMETHEUS: &str = "cluster.local/ns/istio-system/sa/prometheus";

/// The title of the Bookinfo productpage, which the stand-in productpage app serves.
pub const PRODUCTPAGE_TITLE: &str = "<title>Simple Bookstore App</title>";

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

// ---- Envoy ------------------------------------------------------------------------------

/// Envoy and the module for `test`, or `None` (the reason printed) when the test skips for
/// want of either: Envoy is looked for first, as [`TestEnv::for_test`] and [`wasm_or_skip`]
/// do (under CI a missing one fails the test instead).
pub fn envoy_and_module(test: &str) -> Option<(TestEnv, PathBuf)> {
    let env = TestEnv::for_test(test)?;
    let wasm = wasm_or_skip(test)?;
    Some((env, wasm))
}

/// Starts Envoy `name` with `spec` plus one mTLS listener, also `name`, on a free port of
/// `address`: `kind` in front of `upstream`. Returns Envoy and that port.
pub fn start_with_listener(
    env: &TestEnv,
    mut spec: EnvoySpec,
    name: &str,
    address: IpAddr,
    kind: ListenerKind,
    upstream: SocketAddr,
) -> (Envoy, u16) {
    spec.listeners.push(
        env.listener(name, address, 0, kind, Upstream::plain(upstream))
            .unwrap(),
    );
    let envoy = env.start(name, spec).unwrap();
    let port = envoy.port(name).unwrap();
    (envoy, port)
}

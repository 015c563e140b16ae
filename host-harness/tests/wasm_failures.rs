//! What the host refuses, as Envoy would: traps (the VM is then discarded), actions outside
//! the ABI, streams left neither allowed nor denied, bad guest pointers, modules Envoy would
//! not load. Small hand-written modules (WAT) play the misbehaving plugin; the real module
//! is made to trap with a header map the SDK cannot parse.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use authz_plugin::engine::{OwnedAttributes, Verdict};
use authz_wasm_host::{shared_module, HostError, HostSettings, StreamOptions, WasmModule};
use common::productpage_request;

/// A minimal proxy-wasm module: a bump allocator, the ABI marker, and the given callbacks.
fn module(callbacks: &str) -> String {
    format!(
        r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_close_stream" (func $close (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "RBAC: access denied")
  (data (i32.const 64) "oops")
  (data (i32.const 96) "configuration refused by the test module")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    global.get $heap
    local.set $p
    global.get $heap
    local.get $n
    i32.add
    global.set $heap
    local.get $p)
  (func (export "proxy_on_context_create") (param i32 i32))
  {callbacks}
)"#
    )
}

fn load(wat: &str) -> WasmModule {
    WasmModule::from_bytes(wat.as_bytes(), HostSettings::default())
        .unwrap_or_else(|e| panic!("load: {e:#}"))
}

fn request() -> OwnedAttributes {
    productpage_request(
        Some("spiffe://cluster.local/ns/default/sa/curl"),
        "GET",
        "/",
        &[],
        None,
    )
}

fn connection() -> OwnedAttributes {
    OwnedAttributes {
        http: None,
        ..request()
    }
}

#[test]
fn a_trap_in_on_request_headers_is_a_failure_not_a_decision() {
    let m = load(&module(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) unreachable)"#,
    ));
    let mut vm = m.configure(b"{}").unwrap_or_else(|e| panic!("{e}"));
    match vm.request(&request()) {
        Err(HostError::Trap {
            callback, message, ..
        }) => {
            assert_eq!(callback, "proxy_on_request_headers");
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    // Envoy marks the VM failed: nothing runs on it any more.
    assert!(vm.failed().is_some());
    match vm.request(&request()) {
        Err(HostError::VmFailed { .. }) => {}
        other => panic!("expected VmFailed, got {other:?}"),
    }
}

#[test]
fn an_sdk_panic_on_a_malformed_header_map_is_a_trap_with_the_panic_message() {
    let module = shared_module().unwrap_or_else(|e| panic!("{e}"));
    // A policy on a header, so that the module reads the whole header map (the method alone
    // is a single header read).
    let config = br#"{"mode": "waypoint", "waypoint": {"name": "waypoint", "namespace": "default"},
        "services": [{"name": "productpage", "namespace": "default", "addresses": ["10.96.0.10"]}],
        "policies": [{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                      "metadata": {"name": "get-only", "namespace": "default"},
                      "spec": {"targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}],
                               "rules": [{"when": [{"key": "request.headers[x-tenant]", "values": ["blue"]}]}]}}]}"#;
    let mut vm = module.configure(config).unwrap_or_else(|e| panic!("{e}"));
    // The 1-byte "empty map" form the spec allows and the Rust SDK cannot read.
    let opts = StreamOptions {
        raw_request_headers: Some(vec![0]),
        ..StreamOptions::default()
    };
    match vm.request_with(&request(), &opts) {
        Err(e @ HostError::Trap { .. }) => {
            let critical: Vec<&String> = e
                .logs()
                .iter()
                .filter(|(l, _)| *l == 5)
                .map(|(_, m)| m)
                .collect();
            assert!(
                !critical.is_empty(),
                "the SDK's panic hook logs at critical: {e}"
            );
            assert!(e.to_string().contains("proxy_on_request_headers"), "{e}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(matches!(
        vm.request(&request()),
        Err(HostError::VmFailed { .. })
    ));
}

#[test]
fn actions_outside_the_abi_are_refused() {
    let m = load(&module(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) i32.const 7)"#,
    ));
    let mut vm = m.configure(b"{}").unwrap_or_else(|e| panic!("{e}"));
    match vm.request(&request()) {
        Err(HostError::BadAction {
            callback, detail, ..
        }) => {
            assert_eq!(callback, "proxy_on_request_headers");
            assert!(detail.contains("action 7"), "{detail}");
        }
        other => panic!("expected BadAction, got {other:?}"),
    }
}

#[test]
fn a_paused_request_without_reply_is_refused() {
    let m = load(&module(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) i32.const 1)"#,
    ));
    let mut vm = m.configure(b"{}").unwrap_or_else(|e| panic!("{e}"));
    match vm.request(&request()) {
        Err(HostError::BadAction { detail, .. }) => assert!(detail.contains("hang"), "{detail}"),
        other => panic!("expected BadAction, got {other:?}"),
    }
}

#[test]
fn only_the_rbac_403_is_a_deny() {
    let reply = |status: u32, body_ptr: u32, body_len: u32| {
        module(&format!(
            r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
                 (drop (call $reply (i32.const {status}) (i32.const 0) (i32.const 0)
                                    (i32.const {body_ptr}) (i32.const {body_len}) (i32.const 0) (i32.const 0) (i32.const -1)))
                 i32.const 0)"#
        ))
    };
    // 403 "RBAC: access denied": a deny, even though the callback said Continue (Envoy forces
    // a stop after a local reply).
    let m = load(&reply(403, 16, 19));
    let mut vm = m.configure(b"{}").unwrap_or_else(|e| panic!("{e}"));
    let out = vm.request(&request()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.verdict, Verdict::Deny);
    assert_eq!(out.status, Some(403));
    assert_eq!(out.reason, None, "this module logs no decision line");

    let m = load(&reply(503, 64, 4));
    let mut vm = m.configure(b"{}").unwrap_or_else(|e| panic!("{e}"));
    match vm.request(&request()) {
        Err(HostError::BadAction { detail, .. }) => assert!(detail.contains("503"), "{detail}"),
        other => panic!("expected BadAction, got {other:?}"),
    }
}

#[test]
fn a_reset_is_not_a_deny() {
    let m = load(&module(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
             (drop (call $close (i32.const 0)))
             i32.const 1)"#,
    ));
    let mut vm = m.configure(b"{}").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        vm.request(&request()),
        Err(HostError::BadAction { .. })
    ));
}

#[test]
fn l4_close_then_continue_leaks_bytes_and_is_refused() {
    let m = load(&module(
        r#"(func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32)
             (drop (call $close (i32.const 2)))
             i32.const 0)"#,
    ));
    let mut vm = m.configure(b"{}").unwrap_or_else(|e| panic!("{e}"));
    match vm.connection(&connection()) {
        Err(HostError::BadAction {
            callback, detail, ..
        }) => {
            assert_eq!(callback, "proxy_on_downstream_data");
            assert!(detail.contains("continued"), "{detail}");
        }
        other => panic!("expected BadAction, got {other:?}"),
    }
}

#[test]
fn l4_close_and_pause_is_a_deny_and_plain_continue_an_allow() {
    let m = load(&module(
        r#"(func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32)
             (drop (call $close (i32.const 2)))
             i32.const 1)"#,
    ));
    let mut vm = m.configure(b"{}").unwrap_or_else(|e| panic!("{e}"));
    let out = vm
        .connection(&connection())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.verdict, Verdict::Deny);
    assert!(out.closed);

    let m = load(&module(""));
    let mut vm = m.configure(b"{}").unwrap_or_else(|e| panic!("{e}"));
    let out = vm
        .connection(&connection())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.verdict, Verdict::Allow);
}

#[test]
fn continue_upstream_traps_because_envoy_answers_unimplemented() {
    let m = load(&module(
        r#"(func (export "proxy_on_new_connection") (param i32) (result i32)
             (drop (call $continue (i32.const 3)))
             i32.const 0)"#,
    ));
    let mut vm = m.configure(b"{}").unwrap_or_else(|e| panic!("{e}"));
    match vm.connection(&connection()) {
        Err(HostError::Trap { message, .. }) => {
            assert!(message.contains("UNIMPLEMENTED"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn bad_guest_pointers_trap() {
    let m = load(&module(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
             (drop (call $log (i32.const 2) (i32.const 0x7ffffff0) (i32.const 64)))
             i32.const 0)"#,
    ));
    let mut vm = m.configure(b"{}").unwrap_or_else(|e| panic!("{e}"));
    match vm.request(&request()) {
        Err(HostError::Trap { message, .. }) => {
            assert!(message.contains("invalid memory access"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn configure_returning_false_is_a_rejection_with_the_module_logs() {
    let m = load(&module(
        r#"(func (export "proxy_on_configure") (param i32 i32) (result i32)
             (drop (call $log (i32.const 4) (i32.const 96) (i32.const 40)))
             i32.const 0)"#,
    ));
    match m.configure(b"{}") {
        Err(e @ HostError::ConfigureRejected { .. }) => {
            assert!(
                e.to_string()
                    .contains("configuration refused by the test module"),
                "{e}"
            );
            assert_eq!(
                e.logs(),
                &[(4, "configuration refused by the test module".to_string())]
            );
        }
        Err(other) => panic!("expected ConfigureRejected, got {other}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn runaway_callbacks_run_out_of_fuel() {
    let wat = module(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (loop (br 0)) i32.const 0)"#,
    );
    let settings = HostSettings {
        fuel_per_callback: 1_000_000,
        ..HostSettings::default()
    };
    let m = WasmModule::from_bytes(wat.as_bytes(), settings).unwrap_or_else(|e| panic!("{e:#}"));
    let mut vm = m.configure(b"{}").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        vm.request(&request()),
        Err(HostError::Trap { .. })
    ));
}

#[test]
fn modules_envoy_would_not_load_are_refused_at_load() {
    // No ABI version marker.
    let no_abi = module("").replace(r#"(func (export "proxy_abi_version_0_2_1"))"#, "");
    let err = WasmModule::from_bytes(no_abi.as_bytes(), HostSettings::default())
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("ABI version"), "{err:#}");
    // An import the host does not provide.
    let unknown = module("").replace(
        "(memory (export",
        r#"(import "env" "proxy_does_not_exist" (func (param i32) (result i32))) (memory (export"#,
    );
    let err = WasmModule::from_bytes(unknown.as_bytes(), HostSettings::default())
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("proxy_does_not_exist"),
        "{err:#}"
    );
    // A callback with the wrong signature.
    let wrong = module(
        r#"(func (export "proxy_on_request_headers") (param i32 i32) (result i32) i32.const 0)"#,
    );
    let err = WasmModule::from_bytes(wrong.as_bytes(), HostSettings::default())
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("proxy_on_request_headers"),
        "{err:#}"
    );
}

#[test]
fn the_real_module_links_against_the_host() {
    // Every import of the real module is provided (instantiate_pre checks at load).
    let module = shared_module().unwrap_or_else(|e| panic!("{e}"));
    assert!(module.path().is_some());
}

//! Test-only fault injection (cargo feature `fault-injection`; never in a shipped build).
//!
//! A module that fails inside the proxy must leave it denying, never allowing: with
//! `failure_policy: FAIL_CLOSED` Envoy answers every request of a failed plugin itself
//! (https://www.envoyproxy.io/docs/envoy/v1.40.0/api-v3/extensions/wasm/v3/wasm.proto#enum-extensions-wasm-v3-failurepolicy).
//! To show it, this build fails on demand:
//! * a request with header `x-authz-fault: trap`, or a connection whose first bytes are
//!   `AUTHZ-FAULT trap`, executes a Wasm `unreachable` (a trap, as a bug would);
//! * `x-authz-fault: oom` / `AUTHZ-FAULT oom` allocates until the module's linear memory
//!   cannot grow any more (the allocator's failure aborts, which traps).
//!
//! The allocations are never written to, so the host commits little real memory.

/// The request header that asks for a fault.
pub(super) const HEADER: &str = "x-authz-fault";
/// The first bytes of a connection that ask for a fault.
const PREFIX: &[u8] = b"AUTHZ-FAULT ";

pub(super) fn on_request(value: Option<&str>) {
    fail(value.map(str::as_bytes));
}

pub(super) fn on_data(data: Option<&[u8]>) {
    fail(data.and_then(|d| d.strip_prefix(PREFIX)));
}

fn fail(what: Option<&[u8]>) {
    match what {
        Some(w) if w.starts_with(b"trap") => {
            log::error!("authz: fault injection: trapping");
            core::arch::wasm32::unreachable()
        }
        Some(w) if w.starts_with(b"oom") => {
            log::error!("authz: fault injection: exhausting memory");
            exhaust_memory()
        }
        _ => {}
    }
}

fn exhaust_memory() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // `Vec::with_capacity` aborts (a trap) when the allocator cannot grow memory.
        hoard.push(Vec::with_capacity(64 << 20));
        std::hint::black_box(&hoard);
    }
}

//! The host side of proxy-wasm ABI 0.2.1 as Envoy (through proxy-wasm-cpp-host) implements
//! it: every `env.proxy_*` function the Rust SDK imports, and the WASI functions a
//! `wasm32-wasip1` Rust module imports.
//!
//! Rules kept throughout (<https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1>):
//! * every guest pointer is bounds-checked; a bad one traps the guest (cpp-host would return
//!   `INVALID_MEMORY_ACCESS`, a status the Rust SDK cannot represent);
//! * results are allocated inside the guest through its `proxy_on_memory_allocate` (or
//!   `malloc`), and empty results are returned as `(0, 0)` without allocating;
//! * only statuses the Rust SDK knows are returned (never 6 or 12); where Envoy would answer
//!   `UNIMPLEMENTED` (`continue_stream(UPSTREAM)`) the guest is trapped instead;
//! * side effects that Envoy defers until the callback returns (local replies, closes,
//!   continues) are recorded as [`Effects`] and interpreted by the caller afterwards.

use super::codec::{deserialize_pairs, serialize_pairs, Pairs};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wasmtime::{
    bail, format_err, Caller, FuncType, Linker, Memory, StoreLimits, TypedFunc, Val, ValType,
};

type HostResult<T> = wasmtime::Result<T>;

/// `proxy_status_t` values the Rust SDK knows.
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const EMPTY: i32 = 7;
    pub const CAS_MISMATCH: i32 = 8;
}

mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const INVAL: i32 = 28;
    pub const NOTSUP: i32 = 58;
}

/// `proxy_stream_type_t`.
pub mod stream_type {
    pub const HTTP_REQUEST: u32 = 0;
    pub const HTTP_RESPONSE: u32 = 1;
    pub const DOWNSTREAM: u32 = 2;
    pub const UPSTREAM: u32 = 3;
}

/// Which module callback is running: decides which buffers are readable (spec "Buffers").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    None,
    Initialize,
    ContextCreate,
    VmStart,
    Configure,
    Tick,
    NewConnection,
    DownstreamData,
    UpstreamData,
    ConnectionClose,
    RequestHeaders,
    ResponseHeaders,
    ResponseBody,
    Log,
    Done,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Root,
    Http,
    Tcp,
}

/// A local reply requested with `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub details: Vec<u8>,
    pub body: Vec<u8>,
    pub headers: Pairs,
    pub grpc_status: i32,
}

/// Deferred side effects of one callback.
#[derive(Debug, Default)]
pub struct Effects {
    pub local_response: Option<LocalResponse>,
    pub closed: Vec<u32>,
    pub continued: Vec<u32>,
}

/// One context (root or stream) the host knows.
#[derive(Debug)]
pub struct ContextState {
    pub kind: Kind,
    pub properties: HashMap<Vec<u8>, Vec<u8>>,
    pub set_properties: HashMap<Vec<u8>, Vec<u8>>,
    pub request_headers: Option<Pairs>,
    /// Test hook: served verbatim by `get_header_map_pairs(HTTP_REQUEST_HEADERS)`.
    pub raw_request_headers: Option<Vec<u8>>,
    pub response_headers: Option<Pairs>,
    pub downstream_data: Vec<u8>,
    pub upstream_data: Vec<u8>,
    pub response_body: Vec<u8>,
    pub effects: Effects,
    pub local_response_sent: bool,
}

impl ContextState {
    pub fn new(kind: Kind) -> ContextState {
        ContextState {
            kind,
            properties: HashMap::new(),
            set_properties: HashMap::new(),
            request_headers: None,
            raw_request_headers: None,
            response_headers: None,
            downstream_data: Vec::new(),
            upstream_data: Vec::new(),
            response_body: Vec::new(),
            effects: Effects::default(),
            local_response_sent: false,
        }
    }
}

/// `proxy_metric_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    pub value: i64,
}

/// Shared data and queues: process-wide per VM id in Envoy, so shared by the canary and the
/// worker VMs of one [`super::WasmModule`].
#[derive(Debug, Default)]
pub struct SharedData {
    kv: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    next_cas: u32,
    queues: Vec<(Vec<u8>, VecDeque<Vec<u8>>)>,
}

/// Per-VM host state (the wasmtime `Store` data).
pub struct HostState {
    pub limits: StoreLimits,
    pub log_level: u32,
    pub logs: Vec<(u32, String)>,
    fd_buffers: [Vec<u8>; 2],
    pub memory: Option<Memory>,
    pub allocator: Option<TypedFunc<i32, i32>>,
    pub contexts: HashMap<u32, ContextState>,
    pub current: u32,
    pub effective: u32,
    pub callback: Callback,
    pub vm_configuration: Vec<u8>,
    pub plugin_configuration: Vec<u8>,
    pub plugin_properties: HashMap<Vec<u8>, Vec<u8>>,
    pub metrics: Vec<Metric>,
    pub shared: Arc<Mutex<SharedData>>,
    pub vm_id: String,
    pub tick_period_ms: u32,
    /// How often the module called each `env` host function (what a request costs the host).
    pub host_calls: Mutex<HashMap<String, u64>>,
    started: Instant,
    rng: u64,
}

impl HostState {
    pub fn new(
        limits: StoreLimits,
        log_level: u32,
        shared: Arc<Mutex<SharedData>>,
        plugin_properties: HashMap<Vec<u8>, Vec<u8>>,
        vm_id: String,
    ) -> HostState {
        let seed = unix_time_nanos().unwrap_or(0x9e37_79b9_7f4a_7c15);
        HostState {
            limits,
            log_level,
            logs: Vec::new(),
            fd_buffers: [Vec::new(), Vec::new()],
            memory: None,
            allocator: None,
            contexts: HashMap::new(),
            current: 0,
            effective: 0,
            callback: Callback::None,
            vm_configuration: Vec::new(),
            plugin_configuration: Vec::new(),
            plugin_properties,
            metrics: Vec::new(),
            shared,
            vm_id,
            tick_period_ms: 0,
            host_calls: Mutex::new(HashMap::new()),
            started: Instant::now(),
            rng: seed | 1,
        }
    }

    /// Takes the captured log lines (flushing partial stdout/stderr lines).
    pub fn drain_logs(&mut self) -> Vec<(u32, String)> {
        for fd in 0..2 {
            let rest = std::mem::take(&mut self.fd_buffers[fd]);
            if !rest.is_empty() {
                self.logs
                    .push((fd_level(fd), String::from_utf8_lossy(&rest).into_owned()));
            }
        }
        std::mem::take(&mut self.logs)
    }

    fn context(&mut self) -> Option<&mut ContextState> {
        self.contexts.get_mut(&self.effective)
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: WASI asks for randomness, not for cryptographic strength, here.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The wall clock in nanoseconds since the Unix epoch; `None` before it.
fn unix_time_nanos() -> Option<u64> {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Some(since_epoch.as_nanos() as u64)
}

fn fd_level(index: usize) -> u32 {
    // stdout → info, stderr → error (spec v0.2.1 "fd_write").
    if index == 0 {
        2
    } else {
        4
    }
}

// ---------------------------------------------------------------------------------------
// One call of a host function.

/// The module's call of host function `name`: the VM's state and the guest memory, with
/// every trap naming the function.
struct HostCall<'a> {
    caller: Caller<'a, HostState>,
    name: &'static str,
}

/// Where a host function stops before its end: at a status the module is answered with, or
/// at a trap.
enum Stop {
    Status(i32),
    Trap(wasmtime::Error),
}

impl Stop {
    const NOT_FOUND: Stop = Stop::Status(status::NOT_FOUND);
    const BAD_ARGUMENT: Stop = Stop::Status(status::BAD_ARGUMENT);
}

impl From<wasmtime::Error> for Stop {
    fn from(error: wasmtime::Error) -> Stop {
        Stop::Trap(error)
    }
}

/// What a host function's body returns: `Ok` or `Err(Stop::Status)` is the status the
/// module gets, so that helpers can end the call early with `?`.
type Answer = Result<i32, Stop>;

/// Runs the body of host function `name` for one call by the module.
fn run<'a>(
    caller: Caller<'a, HostState>,
    name: &'static str,
    body: impl FnOnce(&mut HostCall<'a>) -> Answer,
) -> HostResult<i32> {
    match body(&mut HostCall { caller, name }) {
        Ok(status) | Err(Stop::Status(status)) => Ok(status),
        Err(Stop::Trap(error)) => Err(error),
    }
}

fn range(func: &str, ptr: i32, len: usize, size: usize) -> HostResult<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    match start.checked_add(len) {
        Some(end) if end <= size => Ok(start..end),
        _ => bail!(
            "{func}: invalid memory access: {len} bytes at {start:#x}, memory is {size} bytes"
        ),
    }
}

impl HostCall<'_> {
    fn state(&self) -> &HostState {
        self.caller.data()
    }

    fn state_mut(&mut self) -> &mut HostState {
        self.caller.data_mut()
    }

    /// Counts the call in `host_calls`, and refuses it while `_initialize` runs: cpp-host
    /// restricts the module to logging, time and WASI before any root context exists.
    fn check_init(&self) -> HostResult<()> {
        let func = self.name;
        if let Ok(mut calls) = self.state().host_calls.lock() {
            *calls.entry(func.to_string()).or_default() += 1;
        }
        if self.state().callback == Callback::Initialize {
            bail!("{func} called during _initialize: Envoy allows only logging, time and WASI before the root context exists");
        }
        Ok(())
    }

    fn memory(&self) -> HostResult<Memory> {
        self.state()
            .memory
            .ok_or_else(|| format_err!("the module exports no memory"))
    }

    fn read(&mut self, ptr: i32, len: i32) -> HostResult<Vec<u8>> {
        let mem = self.memory()?;
        let data = mem.data(&self.caller);
        let r = range(self.name, ptr, len as u32 as usize, data.len())?;
        Ok(data.get(r).map(<[u8]>::to_vec).unwrap_or_default())
    }

    fn write(&mut self, ptr: i32, bytes: &[u8]) -> HostResult<()> {
        let mem = self.memory()?;
        let data = mem.data_mut(&mut self.caller);
        let r = range(self.name, ptr, bytes.len(), data.len())?;
        if let Some(slot) = data.get_mut(r) {
            slot.copy_from_slice(bytes);
        }
        Ok(())
    }

    fn check(&mut self, ptr: i32, len: usize) -> HostResult<()> {
        let mem = self.memory()?;
        let size = mem.data_size(&self.caller);
        range(self.name, ptr, len, size).map(|_| ())
    }

    fn write_u32(&mut self, ptr: i32, v: u32) -> HostResult<()> {
        self.write(ptr, &v.to_le_bytes())
    }

    fn write_u64(&mut self, ptr: i32, v: u64) -> HostResult<()> {
        self.write(ptr, &v.to_le_bytes())
    }

    /// Writes `value` to the out-pointer `out` and answers OK.
    fn return_u32(&mut self, out: i32, value: u32) -> Answer {
        self.write_u32(out, value)?;
        Ok(status::OK)
    }

    fn return_u64(&mut self, out: i32, value: u64) -> Answer {
        self.write_u64(out, value)?;
        Ok(status::OK)
    }

    /// Header name `(ptr, len)`, lower-cased as Envoy keys its header maps, and header map
    /// `map_type` (BAD_ARGUMENT without one).
    fn header_name_in(
        &mut self,
        map_type: i32,
        ptr: i32,
        len: i32,
    ) -> Result<(Vec<u8>, &mut Pairs), Stop> {
        let name = lower(&self.read(ptr, len)?);
        Ok((name, header_map(self.state_mut(), map_type)?))
    }

    /// A header's lower-cased name and its value, both read before header map `map_type` is
    /// looked up.
    fn header_in(
        &mut self,
        map_type: i32,
        (name_ptr, name_len): (i32, i32),
        (value_ptr, value_len): (i32, i32),
    ) -> Result<(Vec<u8>, Vec<u8>, &mut Pairs), Stop> {
        let name = lower(&self.read(name_ptr, name_len)?);
        let value = self.read(value_ptr, value_len)?;
        Ok((name, value, header_map(self.state_mut(), map_type)?))
    }

    /// Copies `bytes` into guest memory allocated by the guest's own allocator and writes the
    /// address and length to the out-pointers; `(0, 0)` for nothing.
    fn return_bytes(&mut self, bytes: &[u8], ptr_out: i32, len_out: i32) -> Answer {
        let func = self.name;
        self.check(ptr_out, 4)?;
        self.check(len_out, 4)?;
        if bytes.is_empty() {
            self.write_u32(ptr_out, 0)?;
            self.write_u32(len_out, 0)?;
            return Ok(status::OK);
        }
        let alloc = self.state().allocator.clone().ok_or_else(|| {
            format_err!("{func}: the module exports no proxy_on_memory_allocate or malloc")
        })?;
        let len = i32::try_from(bytes.len())
            .map_err(|_| format_err!("{func}: result of {} bytes too large", bytes.len()))?;
        let ptr = alloc.call(&mut self.caller, len)?;
        if ptr == 0 {
            return Err(
                format_err!("{func}: the module's allocator returned 0 for {len} bytes").into(),
            );
        }
        self.write(ptr, bytes)?;
        self.write_u32(ptr_out, ptr as u32)?;
        self.write_u32(len_out, len as u32)?;
        Ok(status::OK)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------
// Buffers and header maps.

const VM_CONFIGURATION: i32 = 6;
const PLUGIN_CONFIGURATION: i32 = 7;

/// The buffer readable in the current callback: NOT_FOUND outside its window, BAD_ARGUMENT
/// for a type the ABI does not define.
fn readable_buffer(state: &mut HostState, buffer_type: i32) -> Result<Vec<u8>, Stop> {
    let cb = state.callback;
    let buffer = match buffer_type {
        VM_CONFIGURATION if cb == Callback::VmStart => Some(state.vm_configuration.clone()),
        PLUGIN_CONFIGURATION if cb == Callback::Configure => {
            Some(state.plugin_configuration.clone())
        }
        2 if cb == Callback::DownstreamData => state.context().map(|c| c.downstream_data.clone()),
        3 if cb == Callback::UpstreamData => state.context().map(|c| c.upstream_data.clone()),
        1 if cb == Callback::ResponseBody => state.context().map(|c| c.response_body.clone()),
        0..=8 => None,
        _ => return Err(Stop::BAD_ARGUMENT),
    };
    buffer.ok_or(Stop::NOT_FOUND)
}

/// The buffer the module may change in the current callback: NOT_FOUND outside its window,
/// BAD_ARGUMENT for a type the ABI does not define.
fn writable_buffer(state: &mut HostState, buffer_type: i32) -> Result<&mut Vec<u8>, Stop> {
    if !(0..=8).contains(&buffer_type) {
        return Err(Stop::BAD_ARGUMENT);
    }
    let cb = state.callback;
    let ctx = state.context().ok_or(Stop::NOT_FOUND)?;
    match buffer_type {
        2 if cb == Callback::DownstreamData => Ok(&mut ctx.downstream_data),
        3 if cb == Callback::UpstreamData => Ok(&mut ctx.upstream_data),
        1 if cb == Callback::ResponseBody => Ok(&mut ctx.response_body),
        _ => Err(Stop::NOT_FOUND),
    }
}

/// The header map `map_type` of the effective context: BAD_ARGUMENT for an unknown type or a
/// map this context does not have, as Envoy answers.
fn header_map(state: &mut HostState, map_type: i32) -> Result<&mut Pairs, Stop> {
    let ctx = state.context().filter(|ctx| ctx.kind == Kind::Http);
    let map = ctx.and_then(|ctx| match map_type {
        0 => ctx.request_headers.as_mut(),
        2 => ctx.response_headers.as_mut(),
        _ => None,
    });
    map.ok_or(Stop::BAD_ARGUMENT)
}

fn lower(bytes: &[u8]) -> Vec<u8> {
    bytes.to_ascii_lowercase()
}

/// The effective context when stream `ty` is one it can continue or close (an HTTP stream's
/// request or response; for a TCP one, `tcp_streams`): BAD_ARGUMENT otherwise, as Envoy answers.
fn stream_context<'s>(
    state: &'s mut HostState,
    ty: u32,
    tcp_streams: &[u32],
) -> Result<&'s mut ContextState, Stop> {
    let ctx = state.context().ok_or(Stop::BAD_ARGUMENT)?;
    let fits = match ctx.kind {
        Kind::Http => ty == stream_type::HTTP_REQUEST || ty == stream_type::HTTP_RESPONSE,
        Kind::Tcp => tcp_streams.contains(&ty),
        Kind::Root => false,
    };
    if fits {
        Ok(ctx)
    } else {
        Err(Stop::BAD_ARGUMENT)
    }
}

// ---------------------------------------------------------------------------------------
// Metrics, shared data and queues: the module names them by 1-based id.

/// The index of the item with 1-based id `id` (0 is no id).
fn index_of(id: i32) -> Option<usize> {
    (id as u32 as usize).checked_sub(1)
}

/// The 1-based id of the first of `items` that is `same` as `item`, appending `item` when
/// there is none.
fn id_of<T>(items: &mut Vec<T>, item: T, same: impl Fn(&T, &T) -> bool) -> u32 {
    let index = match items.iter().position(|x| same(x, &item)) {
        Some(index) => index,
        None => {
            items.push(item);
            items.len() - 1
        }
    };
    (index + 1) as u32
}

impl HostState {
    /// Metric `id`: NOT_FOUND if the module never defined it.
    fn metric(&mut self, id: i32) -> Result<&mut Metric, Stop> {
        index_of(id)
            .and_then(|i| self.metrics.get_mut(i))
            .ok_or(Stop::NOT_FOUND)
    }

    fn shared_data(&self) -> HostResult<MutexGuard<'_, SharedData>> {
        self.shared
            .lock()
            .map_err(|_| format_err!("shared data lock poisoned"))
    }
}

impl SharedData {
    /// Queue `id`: NOT_FOUND if no module registered it.
    fn queue(&mut self, id: i32) -> Result<&mut VecDeque<Vec<u8>>, Stop> {
        index_of(id)
            .and_then(|i| self.queues.get_mut(i))
            .map(|(_, queue)| queue)
            .ok_or(Stop::NOT_FOUND)
    }
}

// ---------------------------------------------------------------------------------------
// The linker.

/// Defines host function `$name` of import module `$module` on `$linker`, taking the
/// parameters listed after `$call`, the [`HostCall`] its body works through.
macro_rules! host_fn {
    ($linker:ident, $module:expr, $name:expr, |$call:ident $(, $arg:ident: $ty:ty)*| $body:expr) => {
        $linker.func_wrap(
            $module,
            $name,
            move |caller: Caller<'_, HostState>, $($arg: $ty),*| -> HostResult<i32> {
                run(caller, $name, |$call| $body)
            },
        )?
    };
}

/// Defines `env` function `$name` as [`host_fn`] does, for the functions cpp-host refuses
/// during `_initialize`: each call is counted and checked first ([`HostCall::check_init`]).
macro_rules! restricted_env_fn {
    ($linker:ident, $name:expr, |$call:ident $(, $arg:ident: $ty:ty)*| $body:expr) => {
        host_fn!($linker, "env", $name, |$call $(, $arg: $ty)*| {
            $call.check_init()?;
            $body
        })
    };
}

/// The `env` functions that start or serve an HTTP or gRPC call to an upstream, how many
/// `i32`s each takes, and the status each answers: with no upstream clusters, Envoy answers
/// BAD_ARGUMENT (unknown cluster) to a new call, and NOT_FOUND where a call must exist.
const OUTBOUND_CALLS: [(&str, usize, i32); 7] = [
    ("proxy_http_call", 10, status::BAD_ARGUMENT),
    ("proxy_grpc_call", 12, status::BAD_ARGUMENT),
    ("proxy_grpc_stream", 9, status::BAD_ARGUMENT),
    ("proxy_grpc_send", 4, status::NOT_FOUND),
    ("proxy_grpc_cancel", 1, status::NOT_FOUND),
    ("proxy_grpc_close", 1, status::NOT_FOUND),
    ("proxy_get_status", 3, status::NOT_FOUND),
];

/// Defines every host function on `linker`.
pub fn define(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    define_env(linker)?;
    for module in ["wasi_snapshot_preview1", "wasi_unstable"] {
        define_wasi(linker, module)?;
    }
    Ok(())
}

#[allow(clippy::too_many_lines)]
fn define_env(l: &mut Linker<HostState>) -> anyhow::Result<()> {
    // ---- logging, time, lifecycle ----
    // Logging and time: allowed during `_initialize`, so neither refused nor counted.
    host_fn!(
        l,
        "env",
        "proxy_log",
        |c, level: i32, ptr: i32, len: i32| {
            let msg = c.read(ptr, len)?;
            if !(0..=5).contains(&level) {
                return Ok(status::BAD_ARGUMENT);
            }
            let level = level as u32;
            if level >= c.state().log_level {
                c.state_mut().logs.push((level, text(&msg)));
            }
            Ok(status::OK)
        }
    );
    host_fn!(l, "env", "proxy_get_log_level", |c, out: i32| {
        let level = c.state().log_level;
        c.return_u32(out, level)
    });
    host_fn!(
        l,
        "env",
        "proxy_get_current_time_nanoseconds",
        |c, out: i32| {
            let now = unix_time_nanos().unwrap_or(0);
            c.return_u64(out, now)
        }
    );
    restricted_env_fn!(l, "proxy_set_tick_period_milliseconds", |c, period: i32| {
        c.state_mut().tick_period_ms = period as u32;
        Ok(status::OK)
    });
    restricted_env_fn!(l, "proxy_done", |c| {
        // No context is ever left pending finalization (the harness refuses on_done = false).
        Ok(status::NOT_FOUND)
    });
    restricted_env_fn!(l, "proxy_set_effective_context", |c, id: i32| {
        let id = id as u32;
        if c.state().contexts.contains_key(&id) {
            c.state_mut().effective = id;
            Ok(status::OK)
        } else {
            Ok(status::BAD_ARGUMENT)
        }
    });

    // ---- buffers ----
    restricted_env_fn!(
        l,
        "proxy_get_buffer_bytes",
        |c, ty: i32, start: i32, max: i32, ptr_out: i32, len_out: i32| {
            let buf = readable_buffer(c.state_mut(), ty)?;
            // cpp-host clamps start and size to the buffer.
            let start = (start as u32 as usize).min(buf.len());
            let end = start.saturating_add(max as u32 as usize).min(buf.len());
            let slice = buf.get(start..end).unwrap_or_default().to_vec();
            c.return_bytes(&slice, ptr_out, len_out)
        }
    );
    restricted_env_fn!(
        l,
        "proxy_get_buffer_status",
        |c, ty: i32, len_out: i32, flags_out: i32| {
            let buf = readable_buffer(c.state_mut(), ty)?;
            c.write_u32(len_out, buf.len() as u32)?;
            c.return_u32(flags_out, 0)
        }
    );
    restricted_env_fn!(
        l,
        "proxy_set_buffer_bytes",
        |c, ty: i32, start: i32, size: i32, ptr: i32, len: i32| {
            let data = c.read(ptr, len)?;
            let buf = writable_buffer(c.state_mut(), ty)?;
            let (start, size) = (start as u32 as usize, size as u32 as usize);
            // Envoy supports prepend, replace-all and append only.
            if start == 0 && size == 0 {
                let mut next = data;
                next.extend_from_slice(buf);
                *buf = next;
            } else if start == 0 && size >= buf.len() {
                *buf = data;
            } else if start >= buf.len() {
                buf.extend_from_slice(&data);
            } else {
                return Ok(status::BAD_ARGUMENT);
            }
            Ok(status::OK)
        }
    );

    // ---- header maps ----
    restricted_env_fn!(
        l,
        "proxy_get_header_map_pairs",
        |c, ty: i32, ptr_out: i32, len_out: i32| {
            if ty == 0 {
                if let Some(raw) = c
                    .state_mut()
                    .context()
                    .and_then(|ctx| ctx.raw_request_headers.clone())
                {
                    return c.return_bytes(&raw, ptr_out, len_out);
                }
            }
            let map = header_map(c.state_mut(), ty)?;
            // Empty map: (0, 0), as cpp-host does (the SDK panics on the 1-byte form).
            let bytes = if map.is_empty() {
                Vec::new()
            } else {
                serialize_pairs(map)
            };
            c.return_bytes(&bytes, ptr_out, len_out)
        }
    );
    restricted_env_fn!(l, "proxy_get_header_map_size", |c, ty: i32, out: i32| {
        let map = header_map(c.state_mut(), ty)?;
        let size = serialize_pairs(map).len() as u32;
        c.return_u32(out, size)
    });
    restricted_env_fn!(
        l,
        "proxy_set_header_map_pairs",
        |c, ty: i32, ptr: i32, len: i32| {
            let bytes = c.read(ptr, len)?;
            let Ok(pairs) = deserialize_pairs(&bytes) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let map = header_map(c.state_mut(), ty)?;
            *map = pairs.into_iter().map(|(k, v)| (lower(&k), v)).collect();
            Ok(status::OK)
        }
    );
    restricted_env_fn!(
        l,
        "proxy_get_header_map_value",
        |c, ty: i32, kp: i32, kl: i32, ptr_out: i32, len_out: i32| {
            let (key, map) = c.header_name_in(ty, kp, kl)?;
            // Envoy returns only the first occurrence.
            let Some(value) = map.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()) else {
                return Ok(status::NOT_FOUND);
            };
            c.return_bytes(&value, ptr_out, len_out)
        }
    );
    restricted_env_fn!(
        l,
        "proxy_add_header_map_value",
        |c, ty: i32, kp: i32, kl: i32, vp: i32, vl: i32| {
            let (key, value, map) = c.header_in(ty, (kp, kl), (vp, vl))?;
            map.push((key, value));
            Ok(status::OK)
        }
    );
    restricted_env_fn!(
        l,
        "proxy_replace_header_map_value",
        |c, ty: i32, kp: i32, kl: i32, vp: i32, vl: i32| {
            let (key, value, map) = c.header_in(ty, (kp, kl), (vp, vl))?;
            // Envoy's setCopy: one entry with the new value, where the first one was.
            match map.iter().position(|(k, _)| *k == key) {
                Some(i) => {
                    let mut seen = 0usize;
                    map.retain(|(k, _)| {
                        let keep = *k != key || seen == 0;
                        if *k == key {
                            seen += 1;
                        }
                        keep
                    });
                    if let Some(slot) = map.get_mut(i) {
                        slot.1 = value;
                    }
                }
                None => map.push((key, value)),
            }
            Ok(status::OK)
        }
    );
    restricted_env_fn!(
        l,
        "proxy_remove_header_map_value",
        |c, ty: i32, kp: i32, kl: i32| {
            let (key, map) = c.header_name_in(ty, kp, kl)?;
            map.retain(|(k, _)| *k != key);
            Ok(status::OK)
        }
    );

    // ---- properties ----
    restricted_env_fn!(
        l,
        "proxy_get_property",
        |c, pp: i32, pl: i32, ptr_out: i32, len_out: i32| {
            let path = c.read(pp, pl)?;
            let state = c.state_mut();
            let value = {
                let plugin = state.plugin_properties.get(&path).cloned();
                match state.contexts.get(&state.effective) {
                    Some(ctx) => ctx
                        .set_properties
                        .get(&path)
                        .or_else(|| ctx.properties.get(&path))
                        .cloned()
                        .or(plugin),
                    None => plugin,
                }
            };
            match value {
                Some(v) => c.return_bytes(&v, ptr_out, len_out),
                None => Ok(status::NOT_FOUND),
            }
        }
    );
    restricted_env_fn!(
        l,
        "proxy_set_property",
        |c, pp: i32, pl: i32, vp: i32, vl: i32| {
            let path = c.read(pp, pl)?;
            let value = c.read(vp, vl)?;
            match c.state_mut().context() {
                Some(ctx) => {
                    ctx.set_properties.insert(path, value);
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        }
    );

    // ---- stream control ----
    restricted_env_fn!(l, "proxy_continue_stream", |c, ty: i32| {
        let ty = ty as u32;
        if ty == stream_type::UPSTREAM {
            return Err(format_err!("proxy_continue_stream(UPSTREAM): Envoy answers UNIMPLEMENTED, a status the Rust SDK cannot handle").into());
        }
        let ctx = stream_context(c.state_mut(), ty, &[stream_type::DOWNSTREAM])?;
        ctx.effects.continued.push(ty);
        Ok(status::OK)
    });
    restricted_env_fn!(l, "proxy_close_stream", |c, ty: i32| {
        let ty = ty as u32;
        let tcp_streams = [stream_type::DOWNSTREAM, stream_type::UPSTREAM];
        let ctx = stream_context(c.state_mut(), ty, &tcp_streams)?;
        ctx.effects.closed.push(ty);
        Ok(status::OK)
    });
    restricted_env_fn!(
        l,
        "proxy_send_local_response",
        |c, code: i32, dp: i32, dl: i32, bp: i32, bl: i32, hp: i32, hl: i32, grpc: i32| {
            let details = c.read(dp, dl)?;
            let body = c.read(bp, bl)?;
            let headers = c.read(hp, hl)?;
            let Ok(headers) = deserialize_pairs(&headers) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let ctx = c.state_mut().context().ok_or(Stop::BAD_ARGUMENT)?;
            if ctx.kind != Kind::Http || ctx.local_response_sent {
                return Ok(status::BAD_ARGUMENT);
            }
            ctx.local_response_sent = true;
            ctx.effects.local_response = Some(LocalResponse {
                status: code as u32,
                details,
                body,
                headers,
                grpc_status: grpc,
            });
            Ok(status::OK)
        }
    );

    // ---- outbound calls: the harness configures no upstream clusters ----
    for (name, params, answer) in OUTBOUND_CALLS {
        let ty = FuncType::new(l.engine(), vec![ValType::I32; params], [ValType::I32]);
        l.func_new("env", name, ty, move |caller, _params, results| {
            HostCall { caller, name }.check_init()?;
            if let Some(result) = results.first_mut() {
                *result = Val::I32(answer);
            }
            Ok(())
        })?;
    }
    restricted_env_fn!(
        l,
        "proxy_call_foreign_function",
        |c, np: i32, nl: i32, _ap: i32, _al: i32, _rp: i32, _rl: i32| {
            let _name = c.read(np, nl)?;
            Ok(status::NOT_FOUND)
        }
    );

    // ---- shared data and queues ----
    restricted_env_fn!(
        l,
        "proxy_get_shared_data",
        |c, kp: i32, kl: i32, ptr_out: i32, len_out: i32, cas_out: i32| {
            let key = c.read(kp, kl)?;
            let found = c.state().shared_data()?.kv.get(&key).cloned();
            let (value, cas) = found.ok_or(Stop::NOT_FOUND)?;
            c.check(cas_out, 4)?;
            c.return_bytes(&value, ptr_out, len_out)?;
            c.return_u32(cas_out, cas)
        }
    );
    restricted_env_fn!(
        l,
        "proxy_set_shared_data",
        |c, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| {
            let key = c.read(kp, kl)?;
            let value = c.read(vp, vl)?;
            let mut shared = c.state().shared_data()?;
            let cas = cas as u32;
            if let Some((_, current)) = shared.kv.get(&key) {
                if cas != 0 && cas != *current {
                    return Ok(status::CAS_MISMATCH);
                }
            }
            shared.next_cas = shared.next_cas.wrapping_add(1).max(1);
            let next = shared.next_cas;
            shared.kv.insert(key, (value, next));
            Ok(status::OK)
        }
    );
    restricted_env_fn!(
        l,
        "proxy_register_shared_queue",
        |c, np: i32, nl: i32, id_out: i32| {
            let name = c.read(np, nl)?;
            let queue = (name, VecDeque::new());
            let id = id_of(&mut c.state().shared_data()?.queues, queue, |a, b| {
                a.0 == b.0
            });
            c.return_u32(id_out, id)
        }
    );
    restricted_env_fn!(
        l,
        "proxy_resolve_shared_queue",
        |c, vp: i32, vl: i32, np: i32, nl: i32, id_out: i32| {
            let vm_id = c.read(vp, vl)?;
            let name = c.read(np, nl)?;
            if vm_id != c.state().vm_id.as_bytes() && !vm_id.is_empty() {
                return Ok(status::NOT_FOUND);
            }
            let found = c
                .state()
                .shared_data()?
                .queues
                .iter()
                .position(|(n, _)| *n == name);
            let index = found.ok_or(Stop::NOT_FOUND)?;
            c.return_u32(id_out, (index + 1) as u32)
        }
    );
    restricted_env_fn!(
        l,
        "proxy_enqueue_shared_queue",
        |c, id: i32, vp: i32, vl: i32| {
            let value = c.read(vp, vl)?;
            c.state().shared_data()?.queue(id)?.push_back(value);
            Ok(status::OK)
        }
    );
    restricted_env_fn!(
        l,
        "proxy_dequeue_shared_queue",
        |c, id: i32, ptr_out: i32, len_out: i32| {
            let item = c.state().shared_data()?.queue(id)?.pop_front();
            match item {
                None => Ok(status::EMPTY),
                Some(v) => c.return_bytes(&v, ptr_out, len_out),
            }
        }
    );

    // ---- metrics ----
    restricted_env_fn!(
        l,
        "proxy_define_metric",
        |c, ty: i32, np: i32, nl: i32, id_out: i32| {
            let name = text(&c.read(np, nl)?);
            let kind = match ty {
                0 => MetricKind::Counter,
                1 => MetricKind::Gauge,
                2 => MetricKind::Histogram,
                _ => return Ok(status::BAD_ARGUMENT),
            };
            let metric = Metric {
                name,
                kind,
                value: 0,
            };
            let id = id_of(&mut c.state_mut().metrics, metric, |a, b| {
                a.name == b.name && a.kind == b.kind
            });
            c.return_u32(id_out, id)
        }
    );
    restricted_env_fn!(l, "proxy_increment_metric", |c, id: i32, delta: i64| {
        let m = c.state_mut().metric(id)?;
        match m.kind {
            // Envoy: a counter only goes up.
            MetricKind::Counter if delta > 0 => m.value = m.value.saturating_add(delta),
            MetricKind::Gauge => m.value = m.value.saturating_add(delta),
            _ => return Ok(status::BAD_ARGUMENT),
        }
        Ok(status::OK)
    });
    restricted_env_fn!(l, "proxy_record_metric", |c, id: i32, value: i64| {
        let m = c.state_mut().metric(id)?;
        match m.kind {
            MetricKind::Counter => m.value = m.value.saturating_add(value),
            MetricKind::Gauge | MetricKind::Histogram => m.value = value,
        }
        Ok(status::OK)
    });
    restricted_env_fn!(l, "proxy_get_metric", |c, id: i32, out: i32| {
        let m = c.state_mut().metric(id)?;
        if m.kind == MetricKind::Histogram {
            return Ok(status::BAD_ARGUMENT);
        }
        let value = m.value;
        c.return_u64(out, value as u64)
    });
    Ok(())
}

fn define_wasi(l: &mut Linker<HostState>, m: &str) -> anyhow::Result<()> {
    host_fn!(
        l,
        m,
        "fd_write",
        |c, fd: i32, iovs: i32, iovs_len: i32, written_out: i32| {
            if !(1..=2).contains(&fd) {
                return Ok(errno::BADF);
            }
            if !(0..=1024).contains(&iovs_len) {
                return Ok(errno::INVAL);
            }
            let table = c.read(iovs, iovs_len * 8)?;
            let mut data = Vec::new();
            for iov in table.chunks_exact(8) {
                let mut word = [0u8; 4];
                word.copy_from_slice(iov.get(0..4).unwrap_or(&[0; 4]));
                let ptr = u32::from_le_bytes(word) as i32;
                word.copy_from_slice(iov.get(4..8).unwrap_or(&[0; 4]));
                let len = u32::from_le_bytes(word) as i32;
                data.extend(c.read(ptr, len)?);
            }
            c.write_u32(written_out, data.len() as u32)?;
            let index = (fd - 1) as usize;
            let state = c.state_mut();
            state.fd_buffers[index].extend_from_slice(&data);
            while let Some(nl) = state.fd_buffers[index].iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = state.fd_buffers[index].drain(..=nl).collect();
                let line = text(line.get(..line.len() - 1).unwrap_or_default());
                state.logs.push((fd_level(index), line));
            }
            Ok(errno::SUCCESS)
        }
    );
    for name in ["fd_close", "fd_sync", "fd_datasync"] {
        host_fn!(l, m, name, |_c, _fd: i32| Ok(errno::BADF));
    }
    host_fn!(l, m, "fd_read", |_c,
                               _fd: i32,
                               _iovs: i32,
                               _n: i32,
                               _out: i32| {
        Ok(errno::BADF)
    });
    host_fn!(l, m, "fd_seek", |_c,
                               _fd: i32,
                               _off: i64,
                               _whence: i32,
                               _out: i32| {
        Ok(errno::BADF)
    });
    host_fn!(l, m, "fd_fdstat_get", |_c, _fd: i32, _out: i32| {
        Ok(errno::BADF)
    });
    host_fn!(l, m, "fd_prestat_get", |_c, _fd: i32, _out: i32| {
        Ok(errno::BADF)
    });
    host_fn!(
        l,
        m,
        "fd_prestat_dir_name",
        |_c, _fd: i32, _p: i32, _l: i32| Ok(errno::BADF)
    );
    host_fn!(
        l,
        m,
        "clock_time_get",
        |c, id: i32, _precision: i64, out: i32| {
            let now = match id {
                0 => unix_time_nanos().unwrap_or(0),
                1..=3 => c.state().started.elapsed().as_nanos() as u64 + 1,
                _ => return Ok(errno::INVAL),
            };
            c.write_u64(out, now)?;
            Ok(errno::SUCCESS)
        }
    );
    host_fn!(l, m, "clock_res_get", |c, id: i32, out: i32| {
        if !(0..=3).contains(&id) {
            return Ok(errno::INVAL);
        }
        c.write_u64(out, 1)?;
        Ok(errno::SUCCESS)
    });
    host_fn!(l, m, "random_get", |c, buf: i32, len: i32| {
        let len = len as u32 as usize;
        // cpp-host: at most 64 KiB per call.
        if len > 65536 {
            return Ok(errno::INVAL);
        }
        let mut bytes = Vec::with_capacity(len + 8);
        while bytes.len() < len {
            let r = c.state_mut().next_random();
            bytes.extend_from_slice(&r.to_le_bytes());
        }
        bytes.truncate(len);
        c.write(buf, &bytes)?;
        Ok(errno::SUCCESS)
    });
    for name in ["environ_sizes_get", "args_sizes_get"] {
        host_fn!(l, m, name, |c, count: i32, size: i32| {
            c.write_u32(count, 0)?;
            c.write_u32(size, 0)?;
            Ok(errno::SUCCESS)
        });
    }
    for name in ["environ_get", "args_get"] {
        host_fn!(l, m, name, |_c, _a: i32, _b: i32| Ok(errno::SUCCESS));
    }
    l.func_wrap(
        m,
        "proc_exit",
        |_c: Caller<'_, HostState>, code: i32| -> HostResult<()> {
            bail!("proc_exit({code}): the module tried to exit")
        },
    )?;
    host_fn!(l, m, "sched_yield", |_c| Ok(errno::SUCCESS));
    host_fn!(
        l,
        m,
        "poll_oneoff",
        |_c, _i: i32, _o: i32, _n: i32, _out: i32| Ok(errno::NOTSUP)
    );
    Ok(())
}

//! A Wasmtime embedding of the host side of proxy-wasm ABI 0.2.1 that drives the authz module
//! exactly as Envoy does (proxy-wasm/proxy-wasm-cpp-host `src/wasm.cc`, `src/context.cc`):
//!
//! * **configure**: a canary VM (`_initialize`, `proxy_on_context_create(root, 0)`,
//!   `proxy_on_vm_start`, `proxy_on_configure`) is started and discarded; then the worker VM
//!   goes through the same sequence and serves the streams. A `false` from `on_configure` is
//!   [`HostError::ConfigureRejected`] with the module's log lines.
//! * **connection** (network filter): lazy `proxy_on_context_create` right before
//!   `proxy_on_new_connection`, then the first data (`on_downstream_data` with `hello`, or
//!   `on_upstream_data` for a server-first protocol), then the close callbacks and
//!   `on_done` → `on_log` → `on_delete`. Denied = `close_stream(DOWNSTREAM)` before the data
//!   was continued.
//! * **request** (HTTP filter): lazy context create, `proxy_on_request_headers` (end of
//!   stream), the response path (`on_response_headers`/`on_response_body`, for the local reply
//!   or an upstream `200`), then Envoy's end order `on_log` → `on_done` → `on_delete`. Denied =
//!   a local reply `403` with body `RBAC: access denied`.
//!
//! Context ids come from a per-VM counter and are never reused. A trap discards the VM
//! ([`HostError::Trap`], then [`HostError::VmFailed`]); an action Envoy would not accept, or a
//! stream left neither allowed nor denied, is [`HostError::BadAction`].

pub mod build;
pub mod codec;
pub mod decider;
pub mod host;
mod outcome;

pub use build::{build_module, module_for_tests};
pub use outcome::{
    level_name, parse_decision_log, DecisionLog, HostError, LogLine, WasmDryRun, WasmOutcome,
};

use authz_plugin::engine::{OwnedAttributes, Verdict};
use codec::{JwtLocation, PluginIdentity};
use host::{stream_type, Callback, ContextState, Effects, HostState, Kind, MetricKind, SharedData};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use wasmtime::{
    Engine, ExternType, InstancePre, Linker, Module, Store, StoreLimitsBuilder, TypedFunc,
    WasmParams, WasmResults,
};

/// The release module (`$AUTHZ_WASM`, else built with the `wasm` profile), loaded with the
/// default settings and compiled once per process: for tests and tools that need "the" module.
pub fn shared_module() -> Result<&'static WasmModule, String> {
    static MODULE: OnceLock<Result<WasmModule, String>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            module_for_tests()
                .and_then(|path| WasmModule::load(&path))
                .map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The Layer 7 deny body (Envoy's RBAC filter).
pub const RBAC_DENY_BODY: &[u8] = b"RBAC: access denied";

/// How the harness plays Envoy.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// What `proxy_get_log_level` answers and the lowest level kept (debug by default, so that
    /// the module's allow lines are visible).
    pub log_level: u32,
    /// Instruction budget per callback; running out is a trap (Envoy: epoch deadline).
    pub fuel_per_callback: u64,
    /// Linear memory limit (cpp-host default 1 GiB).
    pub max_memory_bytes: usize,
    pub plugin_name: String,
    pub root_id: String,
    pub vm_id: String,
    /// `vm_config.configuration`, readable in `on_vm_start`.
    pub vm_configuration: Vec<u8>,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            log_level: 1,
            fuel_per_callback: 2_000_000_000,
            // wasm32's ceiling, which Envoy's V8 also allows a VM.
            max_memory_bytes: 1 << 32,
            plugin_name: "authz".into(),
            root_id: "authz".into(),
            vm_id: "authz".into(),
            vm_configuration: Vec::new(),
        }
    }
}

/// Which side speaks first on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirstData {
    /// The client sends first (`on_downstream_data`).
    #[default]
    Downstream,
    /// A server-first protocol: the upstream sends first (`on_upstream_data`).
    Upstream,
}

/// Per-stream knobs beyond the attributes.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// The client's port in `source.address` / `source.port`.
    pub source_port: u16,
    pub first_data: FirstData,
    /// Test hook: serve these bytes verbatim as the serialized request header map.
    pub raw_request_headers: Option<Vec<u8>>,
    /// More properties: path segments and the encoded value.
    pub extra_properties: Vec<(Vec<String>, Vec<u8>)>,
    /// Where the module runs: where the caller's identity and address are found.
    pub topology: codec::Topology,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            source_port: 43210,
            first_data: FirstData::Downstream,
            raw_request_headers: None,
            extra_properties: Vec::new(),
            topology: codec::Topology::Direct,
        }
    }
}

/// The module's exports the host calls, with the signatures the ABI gives them.
const EXPORT_SIGNATURES: &[(&str, &str)] = &[
    ("_initialize", "()->()"),
    ("_start", "()->()"),
    ("main", "(i32,i32)->(i32)"),
    ("__main_void", "()->(i32)"),
    ("proxy_on_memory_allocate", "(i32)->(i32)"),
    ("malloc", "(i32)->(i32)"),
    ("proxy_on_context_create", "(i32,i32)->()"),
    ("proxy_on_vm_start", "(i32,i32)->(i32)"),
    ("proxy_on_configure", "(i32,i32)->(i32)"),
    ("proxy_on_tick", "(i32)->()"),
    ("proxy_on_new_connection", "(i32)->(i32)"),
    ("proxy_on_downstream_data", "(i32,i32,i32)->(i32)"),
    ("proxy_on_upstream_data", "(i32,i32,i32)->(i32)"),
    ("proxy_on_downstream_connection_close", "(i32,i32)->()"),
    ("proxy_on_upstream_connection_close", "(i32,i32)->()"),
    ("proxy_on_request_headers", "(i32,i32,i32)->(i32)"),
    ("proxy_on_response_headers", "(i32,i32,i32)->(i32)"),
    ("proxy_on_response_body", "(i32,i32,i32)->(i32)"),
    ("proxy_on_done", "(i32)->(i32)"),
    ("proxy_on_log", "(i32)->()"),
    ("proxy_on_delete", "(i32)->()"),
];

fn signature(ty: &wasmtime::FuncType) -> String {
    let params: Vec<String> = ty.params().map(|t| t.to_string()).collect();
    let results: Vec<String> = ty.results().map(|t| t.to_string()).collect();
    format!("({})->({})", params.join(","), results.join(","))
}

/// The compiled module (compiled once, instantiated per VM).
pub struct WasmModule {
    pre: InstancePre<HostState>,
    engine: Engine,
    settings: HostSettings,
    shared: Arc<Mutex<SharedData>>,
    path: Option<PathBuf>,
}

impl WasmModule {
    /// Loads and compiles a module file (binary, or WAT text), with the default settings.
    pub fn load(path: &Path) -> anyhow::Result<WasmModule> {
        WasmModule::load_with(path, HostSettings::default())
    }

    pub fn load_with(path: &Path, settings: HostSettings) -> anyhow::Result<WasmModule> {
        let bytes =
            std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let mut module = WasmModule::from_bytes(&bytes, settings)?;
        module.path = Some(path.to_path_buf());
        Ok(module)
    }

    /// Compiles a module from bytes (binary or WAT) and checks what Envoy checks at load: the
    /// ABI version marker, a memory, an allocator, the callbacks' signatures, and that every
    /// import is one the host provides.
    pub fn from_bytes(bytes: &[u8], settings: HostSettings) -> anyhow::Result<WasmModule> {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config)?;
        let module = Module::new(&engine, bytes)?;
        let exports: HashMap<String, ExternType> = module
            .exports()
            .map(|e| (e.name().to_string(), e.ty()))
            .collect();
        if !exports.contains_key("proxy_abi_version_0_2_1") {
            let other: Vec<&String> = exports
                .keys()
                .filter(|k| k.starts_with("proxy_abi_version_"))
                .collect();
            anyhow::bail!("missing or unknown Proxy-Wasm ABI version (want proxy_abi_version_0_2_1, found {other:?})");
        }
        if !matches!(exports.get("memory"), Some(ExternType::Memory(_))) {
            anyhow::bail!("the module exports no memory");
        }
        if !exports.contains_key("proxy_on_memory_allocate") && !exports.contains_key("malloc") {
            anyhow::bail!(
                "the module is missing its allocator (proxy_on_memory_allocate or malloc)"
            );
        }
        for (name, want) in EXPORT_SIGNATURES {
            match exports.get(*name) {
                None => {}
                Some(ExternType::Func(ty)) => {
                    let got = signature(ty);
                    if got != *want {
                        anyhow::bail!("export {name} has signature {got}, the ABI says {want}");
                    }
                }
                Some(_) => anyhow::bail!("export {name} is not a function"),
            }
        }
        let mut linker: Linker<HostState> = Linker::new(&engine);
        host::define(&mut linker)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| anyhow::anyhow!("linking the module as Envoy would: {e:#}"))?;
        Ok(WasmModule {
            pre,
            engine,
            settings,
            shared: Arc::new(Mutex::new(SharedData::default())),
            path: None,
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn settings(&self) -> &HostSettings {
        &self.settings
    }

    /// The level `proxy_get_log_level` answers from now on (0 trace … 5 critical).
    pub fn set_log_level(&mut self, level: u32) {
        self.settings.log_level = level;
    }

    /// The canary VM, then the worker VM: the instance Envoy would serve streams with.
    pub fn configure(&self, config_json: &[u8]) -> Result<PluginInstance, HostError> {
        // The canary: rejected configurations never reach a worker.
        let (canary, _) = Vm::start(self, config_json, "canary")?;
        drop(canary);
        let (vm, logs) = Vm::start(self, config_json, "worker")?;
        Ok(PluginInstance {
            vm,
            jwt: JwtLocation::from_config(config_json),
            configure_logs: logs,
            next_connection_id: 1,
        })
    }
}

// ---------------------------------------------------------------------------------------

struct Exports {
    initialize: Option<TypedFunc<(), ()>>,
    start: Option<TypedFunc<(), ()>>,
    main: Option<TypedFunc<(i32, i32), i32>>,
    main_void: Option<TypedFunc<(), i32>>,
    context_create: Option<TypedFunc<(i32, i32), ()>>,
    vm_start: Option<TypedFunc<(i32, i32), i32>>,
    configure: Option<TypedFunc<(i32, i32), i32>>,
    tick: Option<TypedFunc<i32, ()>>,
    new_connection: Option<TypedFunc<i32, i32>>,
    downstream_data: Option<TypedFunc<(i32, i32, i32), i32>>,
    upstream_data: Option<TypedFunc<(i32, i32, i32), i32>>,
    downstream_close: Option<TypedFunc<(i32, i32), ()>>,
    request_headers: Option<TypedFunc<(i32, i32, i32), i32>>,
    response_headers: Option<TypedFunc<(i32, i32, i32), i32>>,
    response_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    done: Option<TypedFunc<i32, i32>>,
    log: Option<TypedFunc<i32, ()>>,
    delete: Option<TypedFunc<i32, ()>>,
}

fn typed<P: WasmParams, R: WasmResults>(
    instance: &wasmtime::Instance,
    store: &mut Store<HostState>,
    name: &str,
) -> Result<Option<TypedFunc<P, R>>, HostError> {
    match instance.get_func(&mut *store, name) {
        None => Ok(None),
        Some(f) => f
            .typed::<P, R>(&*store)
            .map(Some)
            .map_err(|e| HostError::Load(format!("export {name}: {e:#}"))),
    }
}

impl Exports {
    fn get(instance: &wasmtime::Instance, s: &mut Store<HostState>) -> Result<Exports, HostError> {
        Ok(Exports {
            initialize: typed(instance, s, "_initialize")?,
            start: typed(instance, s, "_start")?,
            main: typed(instance, s, "main")?,
            main_void: typed(instance, s, "__main_void")?,
            context_create: typed(instance, s, "proxy_on_context_create")?,
            vm_start: typed(instance, s, "proxy_on_vm_start")?,
            configure: typed(instance, s, "proxy_on_configure")?,
            tick: typed(instance, s, "proxy_on_tick")?,
            new_connection: typed(instance, s, "proxy_on_new_connection")?,
            downstream_data: typed(instance, s, "proxy_on_downstream_data")?,
            upstream_data: typed(instance, s, "proxy_on_upstream_data")?,
            downstream_close: typed(instance, s, "proxy_on_downstream_connection_close")?,
            request_headers: typed(instance, s, "proxy_on_request_headers")?,
            response_headers: typed(instance, s, "proxy_on_response_headers")?,
            response_body: typed(instance, s, "proxy_on_response_body")?,
            done: typed(instance, s, "proxy_on_done")?,
            log: typed(instance, s, "proxy_on_log")?,
            delete: typed(instance, s, "proxy_on_delete")?,
        })
    }
}

/// `proxy_action_t` as Envoy accepts it from a 0.2.1 module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Continue,
    Pause,
}

/// One VM: a store, an instance and its context bookkeeping.
struct Vm {
    store: Store<HostState>,
    exports: Exports,
    root_id: u32,
    next_context_id: u32,
    fuel: u64,
    /// Instructions (fuel) the last `proxy_on_configure` took: a deterministic measure of
    /// configure cost, unlike time on a shared machine.
    configure_fuel: u64,
    failed: Option<String>,
}

impl Vm {
    /// Instantiates and brings the VM up to a configured root context (cpp-host `startVm`,
    /// `canary` / `getOrCreateThreadLocalPlugin`).
    fn start(
        module: &WasmModule,
        config: &[u8],
        phase: &str,
    ) -> Result<(Vm, Vec<LogLine>), HostError> {
        let settings = &module.settings;
        let limits = StoreLimitsBuilder::new()
            .memory_size(settings.max_memory_bytes)
            .instances(1)
            .memories(1)
            .build();
        let identity = PluginIdentity {
            name: settings.plugin_name.clone(),
            root_id: settings.root_id.clone(),
            vm_id: settings.vm_id.clone(),
        };
        let state = HostState::new(
            limits,
            settings.log_level,
            module.shared.clone(),
            codec::plugin_properties(&identity),
            settings.vm_id.clone(),
        );
        let mut store = Store::new(&module.engine, state);
        store.limiter(|s| &mut s.limits);
        let _ = store.set_fuel(settings.fuel_per_callback);
        let instance = module
            .pre
            .instantiate(&mut store)
            .map_err(|e| HostError::Load(format!("instantiating the {phase} VM: {e:?}")))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| HostError::Load("the module exports no memory".into()))?;
        let allocator = match typed::<i32, i32>(&instance, &mut store, "proxy_on_memory_allocate")?
        {
            Some(f) => f,
            None => typed::<i32, i32>(&instance, &mut store, "malloc")?
                .ok_or_else(|| HostError::Load("the module has no allocator".into()))?,
        };
        let exports = Exports::get(&instance, &mut store)?;
        {
            let s = store.data_mut();
            s.memory = Some(memory);
            s.allocator = Some(allocator);
            s.vm_configuration = settings.vm_configuration.clone();
            s.plugin_configuration = config.to_vec();
        }
        let mut vm = Vm {
            store,
            exports,
            root_id: 0,
            next_context_id: 1,
            fuel: settings.fuel_per_callback,
            configure_fuel: 0,
            failed: None,
        };
        // WASI reactor initialisation, then main if exported (cpp-host `startVm`).
        if vm.exports.initialize.is_some() {
            let f = vm.exports.initialize.clone();
            vm.invoke("_initialize", f.as_ref(), (), 0, Callback::Initialize)?;
        } else {
            let f = vm.exports.start.clone();
            vm.invoke("_start", f.as_ref(), (), 0, Callback::Initialize)?;
        }
        if vm.exports.main.is_some() {
            let f = vm.exports.main.clone();
            vm.invoke("main", f.as_ref(), (0, 0), 0, Callback::Initialize)?;
        } else if vm.exports.main_void.is_some() {
            let f = vm.exports.main_void.clone();
            vm.invoke("__main_void", f.as_ref(), (), 0, Callback::Initialize)?;
        }

        let root = vm.new_context(Kind::Root);
        vm.root_id = root;
        let f = vm.exports.context_create.clone();
        vm.invoke(
            "proxy_on_context_create",
            f.as_ref(),
            (root as i32, 0),
            root,
            Callback::ContextCreate,
        )?;
        let vm_config_len = settings.vm_configuration.len() as i32;
        let f = vm.exports.vm_start.clone();
        if vm.invoke(
            "proxy_on_vm_start",
            f.as_ref(),
            (root as i32, vm_config_len),
            root,
            Callback::VmStart,
        )? == Some(0)
        {
            return Err(HostError::VmStartRejected {
                phase: phase.to_string(),
                logs: vm.drain_logs(),
            });
        }
        let f = vm.exports.configure.clone();
        if vm.invoke(
            "proxy_on_configure",
            f.as_ref(),
            (root as i32, config.len() as i32),
            root,
            Callback::Configure,
        )? == Some(0)
        {
            return Err(HostError::ConfigureRejected {
                phase: format!("{phase} VM"),
                logs: vm.drain_logs(),
            });
        }
        let logs = vm.drain_logs();
        Ok((vm, logs))
    }

    fn drain_logs(&mut self) -> Vec<LogLine> {
        self.store.data_mut().drain_logs()
    }

    fn alive(&self) -> Result<(), HostError> {
        match &self.failed {
            Some(cause) => Err(HostError::VmFailed {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn new_context(&mut self, kind: Kind) -> u32 {
        let id = self.next_context_id;
        self.next_context_id += 1;
        self.store
            .data_mut()
            .contexts
            .insert(id, ContextState::new(kind));
        id
    }

    fn context(&mut self, id: u32) -> Option<&mut ContextState> {
        self.store.data_mut().contexts.get_mut(&id)
    }

    fn take_effects(&mut self, id: u32) -> Effects {
        self.context(id)
            .map(|c| std::mem::take(&mut c.effects))
            .unwrap_or_default()
    }

    /// Calls one export as the current callback of context `ctx`. A missing export is `None`
    /// (a no-op for Envoy). A trap fails the VM.
    fn invoke<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &str,
        func: Option<&TypedFunc<P, R>>,
        params: P,
        ctx: u32,
        callback: Callback,
    ) -> Result<Option<R>, HostError> {
        self.alive()?;
        let Some(func) = func else {
            return Ok(None);
        };
        {
            let s = self.store.data_mut();
            s.current = ctx;
            s.effective = ctx;
            s.callback = callback;
        }
        let _ = self.store.set_fuel(self.fuel);
        let result = func.call(&mut self.store, params);
        if name == "proxy_on_configure" {
            self.configure_fuel = self.fuel - self.store.get_fuel().unwrap_or(0);
        }
        {
            let s = self.store.data_mut();
            s.current = 0;
            s.effective = 0;
            s.callback = Callback::None;
        }
        match result {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                self.failed = Some(format!("trap in {name}"));
                Err(HostError::Trap {
                    callback: name.to_string(),
                    message: format!("{e:?}"),
                    logs: self.drain_logs(),
                })
            }
        }
    }

    /// A filter callback's action: only 0 (Continue) and 1 (Pause) exist in ABI 0.2.1.
    fn action(&mut self, name: &str, value: Option<i32>) -> Result<Action, HostError> {
        match value {
            None | Some(0) => Ok(Action::Continue),
            Some(1) => Ok(Action::Pause),
            Some(other) => Err(self.bad(
                name,
                format!(
                    "returned action {other}; ABI 0.2.1 defines only 0 (Continue) and 1 (Pause)"
                ),
            )),
        }
    }

    fn bad(&mut self, name: &str, detail: String) -> HostError {
        HostError::BadAction {
            callback: name.to_string(),
            detail,
            logs: self.drain_logs(),
        }
    }

    /// Calls filter callback `name` of stream `id`, one of those with the ABI's shape
    /// `(context, size, end_of_stream) -> action`, and reads the action it returned.
    fn filter_callback(
        &mut self,
        name: &str,
        func: Option<TypedFunc<(i32, i32, i32), i32>>,
        id: u32,
        (size, end_of_stream): (i32, i32),
        callback: Callback,
    ) -> Result<Action, HostError> {
        let params = (id as i32, size, end_of_stream);
        let value = self.invoke(name, func.as_ref(), params, id, callback)?;
        self.action(name, value)
    }

    /// `data` arriving on connection `id` from `side`: it becomes that side's readable buffer
    /// and the side's data callback runs. Returns the callback's name and action.
    fn connection_data(
        &mut self,
        id: u32,
        side: FirstData,
        data: Vec<u8>,
    ) -> Result<(&'static str, Action), HostError> {
        let size = data.len() as i32;
        let (name, func, callback) = match side {
            FirstData::Downstream => (
                "proxy_on_downstream_data",
                self.exports.downstream_data.clone(),
                Callback::DownstreamData,
            ),
            FirstData::Upstream => (
                "proxy_on_upstream_data",
                self.exports.upstream_data.clone(),
                Callback::UpstreamData,
            ),
        };
        if let Some(c) = self.context(id) {
            match side {
                FirstData::Downstream => c.downstream_data = data,
                FirstData::Upstream => c.upstream_data = data,
            }
        }
        let action = self.filter_callback(name, func, id, (size, 0), callback)?;
        Ok((name, action))
    }

    fn call_context_create(&mut self, id: u32) -> Result<(), HostError> {
        let f = self.exports.context_create.clone();
        let root = self.root_id as i32;
        self.invoke(
            "proxy_on_context_create",
            f.as_ref(),
            (id as i32, root),
            id,
            Callback::ContextCreate,
        )?;
        Ok(())
    }

    /// `on_done` then `on_delete` (after `on_log` for HTTP, before it for TCP: the caller
    /// orders them). `on_done` returning false would leave the context pending until the
    /// module calls `proxy_done`, which the harness does not model: refused.
    fn call_done(&mut self, id: u32) -> Result<(), HostError> {
        let f = self.exports.done.clone();
        if self.invoke("proxy_on_done", f.as_ref(), id as i32, id, Callback::Done)? == Some(0) {
            return Err(self.bad(
                "proxy_on_done",
                "returned false (deferred finalisation through proxy_done is not modelled)".into(),
            ));
        }
        Ok(())
    }

    fn call_log(&mut self, id: u32) -> Result<(), HostError> {
        let f = self.exports.log.clone();
        self.invoke("proxy_on_log", f.as_ref(), id as i32, id, Callback::Log)?;
        Ok(())
    }

    fn call_delete(&mut self, id: u32) -> Result<(), HostError> {
        let f = self.exports.delete.clone();
        self.invoke(
            "proxy_on_delete",
            f.as_ref(),
            id as i32,
            id,
            Callback::Delete,
        )?;
        self.store.data_mut().contexts.remove(&id);
        Ok(())
    }
}

/// One configured VM: what one Envoy worker thread runs.
pub struct PluginInstance {
    vm: Vm,
    jwt: JwtLocation,
    configure_logs: Vec<LogLine>,
    next_connection_id: u64,
}

const PEER_LOCAL: i32 = 1;
const PEER_REMOTE: i32 = 2;

impl PluginInstance {
    /// `proxy_on_configure` again on the same VM with a new configuration. On rejection the
    /// instance keeps serving with what the module kept.
    pub fn reconfigure(&mut self, config_json: &[u8]) -> Result<(), HostError> {
        self.vm.alive()?;
        self.vm.drain_logs();
        self.vm.store.data_mut().plugin_configuration = config_json.to_vec();
        let root = self.vm.root_id;
        let f = self.vm.exports.configure.clone();
        let accepted = self.vm.invoke(
            "proxy_on_configure",
            f.as_ref(),
            (root as i32, config_json.len() as i32),
            root,
            Callback::Configure,
        )?;
        let logs = self.vm.drain_logs();
        if accepted == Some(0) {
            return Err(HostError::ConfigureRejected {
                phase: "reconfigure".into(),
                logs,
            });
        }
        self.jwt = JwtLocation::from_config(config_json);
        self.configure_logs = logs;
        Ok(())
    }

    /// The module's log lines from the last successful (re)configure.
    /// Instructions (Wasmtime fuel) the module's `on_configure` took on the worker VM.
    pub fn configure_fuel(&self) -> u64 {
        self.vm.configure_fuel
    }

    pub fn configure_logs(&self) -> &[LogLine] {
        &self.configure_logs
    }

    /// Whether an earlier trap discarded this VM.
    pub fn failed(&self) -> Option<&str> {
        self.vm.failed.as_deref()
    }

    /// How often the module called each `env` host function that Envoy restricts during
    /// `_initialize` (property, header, buffer, metric and stream calls), since it started.
    pub fn host_calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.vm
            .store
            .data()
            .host_calls
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Metrics the module defined: name, kind and value.
    pub fn metrics(&self) -> Vec<(String, MetricKind, i64)> {
        self.vm
            .store
            .data()
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.kind, m.value))
            .collect()
    }

    /// One metric's value by name.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.vm
            .store
            .data()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Stream contexts still alive in the host (0 after every complete stream).
    pub fn live_streams(&self) -> usize {
        self.vm
            .store
            .data()
            .contexts
            .values()
            .filter(|c| c.kind != Kind::Root)
            .count()
    }

    /// Fires the root context's timer once (`proxy_on_tick`).
    pub fn tick(&mut self) -> Result<Vec<LogLine>, HostError> {
        let root = self.vm.root_id;
        let f = self.vm.exports.tick.clone();
        self.vm.invoke(
            "proxy_on_tick",
            f.as_ref(),
            root as i32,
            root,
            Callback::Tick,
        )?;
        Ok(self.vm.drain_logs())
    }

    fn open_stream(
        &mut self,
        kind: Kind,
        attrs: &OwnedAttributes,
        opts: &StreamOptions,
    ) -> Result<u32, HostError> {
        self.vm.alive()?;
        self.vm.drain_logs();
        let connection_id = self.next_connection_id;
        self.next_connection_id += 1;
        let mut properties = codec::stream_properties(
            attrs,
            kind == Kind::Http,
            opts.source_port,
            connection_id,
            &self.jwt,
            opts.topology,
        );
        for (path, value) in &opts.extra_properties {
            let segments: Vec<&str> = path.iter().map(String::as_str).collect();
            properties.insert(codec::path_key(&segments), value.clone());
        }
        let id = self.vm.new_context(kind);
        if let Some(ctx) = self.vm.context(id) {
            ctx.properties = properties;
        }
        // Envoy creates the stream context lazily, right before the first event.
        self.vm.call_context_create(id)?;
        Ok(id)
    }

    fn outcome(&mut self, id: u32, verdict: Verdict) -> Result<WasmOutcome, HostError> {
        let logs = self.vm.drain_logs();
        let parsed = parse_decision_log(&logs);
        if parsed.decisions > 1 {
            return Err(HostError::BadAction {
                callback: "stream".into(),
                detail: format!(
                    "the module logged {} decisions for one stream",
                    parsed.decisions
                ),
                logs,
            });
        }
        Ok(WasmOutcome {
            verdict,
            policy: parsed.policy,
            rule: parsed.rule,
            reason: parsed.reason,
            logged_verdict: parsed.verdict,
            audit: parsed.audit,
            dry_run: parsed.dry_run,
            status: None,
            body: Vec::new(),
            details: Vec::new(),
            response_headers: Vec::new(),
            closed: false,
            logs,
            context_id: id,
        })
    }

    /// A TCP connection through the network filter: new connection, first data `hello`,
    /// close.
    pub fn connection(&mut self, attrs: &OwnedAttributes) -> Result<WasmOutcome, HostError> {
        self.connection_with(attrs, &StreamOptions::default())
    }

    pub fn connection_with(
        &mut self,
        attrs: &OwnedAttributes,
        opts: &StreamOptions,
    ) -> Result<WasmOutcome, HostError> {
        let id = self.open_stream(Kind::Tcp, attrs, opts)?;
        let vm = &mut self.vm;
        let f = vm.exports.new_connection.clone();
        let value = vm.invoke(
            "proxy_on_new_connection",
            f.as_ref(),
            id as i32,
            id,
            Callback::NewConnection,
        )?;
        vm.action("proxy_on_new_connection", value)?;
        let mut closed = vm
            .take_effects(id)
            .closed
            .contains(&stream_type::DOWNSTREAM);
        let verdict = if closed {
            // Closed before any byte arrived.
            Verdict::Deny
        } else {
            let verdict = self.first_data(id, opts.first_data)?;
            closed = verdict == Verdict::Deny;
            if verdict == Verdict::Allow {
                self.more_data(id, opts.first_data)?;
            }
            verdict
        };
        // The end of the connection (Envoy `onCloseTCP`): close event, done, log, delete.
        let vm = &mut self.vm;
        let peer = if closed { PEER_LOCAL } else { PEER_REMOTE };
        let f = vm.exports.downstream_close.clone();
        vm.invoke(
            "proxy_on_downstream_connection_close",
            f.as_ref(),
            (id as i32, peer),
            id,
            Callback::ConnectionClose,
        )?;
        vm.call_done(id)?;
        vm.call_log(id)?;
        vm.call_delete(id)?;
        let mut outcome = self.outcome(id, verdict)?;
        outcome.closed = closed;
        Ok(outcome)
    }

    /// The first data of a connection: where the module decides.
    fn first_data(&mut self, id: u32, first: FirstData) -> Result<Verdict, HostError> {
        let vm = &mut self.vm;
        let data = match first {
            FirstData::Downstream => b"hello".to_vec(),
            FirstData::Upstream => b"220 ready\r\n".to_vec(),
        };
        let (name, action) = vm.connection_data(id, first, data)?;
        let effects = vm.take_effects(id);
        let closed = effects.closed.contains(&stream_type::DOWNSTREAM);
        let continued = effects.continued.contains(&stream_type::DOWNSTREAM);
        match (action, closed) {
            (Action::Pause, true) => Ok(Verdict::Deny),
            (Action::Continue, false) => Ok(Verdict::Allow),
            (Action::Pause, false) if continued => Ok(Verdict::Allow),
            (Action::Continue, true) => Err(vm.bad(
                name,
                "closed the connection but continued the data: the first bytes would reach the other side".into(),
            )),
            (Action::Pause, false) => Err(vm.bad(
                name,
                "paused the connection without closing or continuing it: neither allowed nor denied".into(),
            )),
        }
    }

    /// After an allow, more client data must keep flowing (the decision is per connection).
    fn more_data(&mut self, id: u32, first: FirstData) -> Result<(), HostError> {
        let vm = &mut self.vm;
        let data = match first {
            FirstData::Downstream => b" world".to_vec(),
            FirstData::Upstream => b"hello".to_vec(),
        };
        let (name, action) = vm.connection_data(id, FirstData::Downstream, data)?;
        let effects = vm.take_effects(id);
        if action != Action::Continue || !effects.closed.is_empty() {
            return Err(vm.bad(
                name,
                "stopped an allowed connection on later data: the decision must hold for the connection".into(),
            ));
        }
        Ok(())
    }

    /// An HTTP request through the HTTP filter: request headers (end of stream), the response
    /// path, then `on_log` → `on_done` → `on_delete`.
    pub fn request(&mut self, attrs: &OwnedAttributes) -> Result<WasmOutcome, HostError> {
        self.request_with(attrs, &StreamOptions::default())
    }

    pub fn request_with(
        &mut self,
        attrs: &OwnedAttributes,
        opts: &StreamOptions,
    ) -> Result<WasmOutcome, HostError> {
        if attrs.http.is_none() {
            return Err(HostError::Usage(
                "request() needs HTTP attributes (attrs.http); use connection() for TCP".into(),
            ));
        }
        let id = self.open_stream(Kind::Http, attrs, opts)?;
        let headers = codec::request_headers(attrs);
        let count = headers.len() as i32;
        let vm = &mut self.vm;
        if let Some(c) = vm.context(id) {
            c.request_headers = Some(headers);
            c.raw_request_headers = opts.raw_request_headers.clone();
        }
        let name = "proxy_on_request_headers";
        let f = vm.exports.request_headers.clone();
        let action = vm.filter_callback(name, f, id, (count, 1), Callback::RequestHeaders)?;
        let effects = vm.take_effects(id);
        if !effects.closed.is_empty() {
            return Err(vm.bad(
                name,
                "reset the stream (close_stream): not the RBAC deny, which is a 403".into(),
            ));
        }
        let mut reply = None;
        let verdict = match (&effects.local_response, action) {
            // Envoy forces "stop" after a local reply, whatever the action.
            (Some(local), _) => {
                let deny = local.status == 403 && local.body == RBAC_DENY_BODY;
                let local = local.clone();
                let mut response: codec::Pairs =
                    vec![(b":status".to_vec(), local.status.to_string().into_bytes())];
                response.extend(
                    local
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
                );
                if !local.body.is_empty() {
                    response.push((
                        b"content-length".to_vec(),
                        local.body.len().to_string().into_bytes(),
                    ));
                    response.push((b"content-type".to_vec(), b"text/plain".to_vec()));
                }
                self.response(id, response, local.body.clone())?;
                if !deny {
                    return Err(self.vm.bad(
                        name,
                        format!(
                            "sent a local reply {} {:?}: neither an allow nor the RBAC deny (403 \"RBAC: access denied\")",
                            local.status,
                            String::from_utf8_lossy(&local.body)
                        ),
                    ));
                }
                reply = Some(local);
                Verdict::Deny
            }
            (None, Action::Continue) => {
                self.response(id, vec![(b":status".to_vec(), b"200".to_vec())], Vec::new())?;
                Verdict::Allow
            }
            (None, Action::Pause) if effects.continued.contains(&stream_type::HTTP_REQUEST) => {
                self.response(id, vec![(b":status".to_vec(), b"200".to_vec())], Vec::new())?;
                Verdict::Allow
            }
            (None, Action::Pause) => {
                return Err(vm.bad(
                    name,
                    "paused the request without a local reply or continue: the request would hang"
                        .into(),
                ))
            }
        };
        // Envoy's end of an HTTP stream: access log, then filter destruction.
        let vm = &mut self.vm;
        vm.call_log(id)?;
        vm.call_done(id)?;
        vm.call_delete(id)?;
        let mut outcome = self.outcome(id, verdict)?;
        if let Some(local) = reply {
            outcome.status = Some(local.status);
            outcome.body = local.body;
            outcome.details = local.details;
            outcome.response_headers = local
                .headers
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
                .collect();
        }
        Ok(outcome)
    }

    /// The response passing back through the filter (the local reply, or the upstream's).
    fn response(&mut self, id: u32, headers: codec::Pairs, body: Vec<u8>) -> Result<(), HostError> {
        let vm = &mut self.vm;
        let count = headers.len() as i32;
        let end = i32::from(body.is_empty());
        let body_len = body.len() as i32;
        if let Some(c) = vm.context(id) {
            c.response_headers = Some(headers);
            c.response_body = body;
        }
        let name = "proxy_on_response_headers";
        let f = vm.exports.response_headers.clone();
        let action = vm.filter_callback(name, f, id, (count, end), Callback::ResponseHeaders)?;
        if action != Action::Continue {
            return Err(vm.bad(
                name,
                "paused the response: it would never reach the client".into(),
            ));
        }
        if body_len > 0 {
            let name = "proxy_on_response_body";
            let f = vm.exports.response_body.clone();
            let action = vm.filter_callback(name, f, id, (body_len, 1), Callback::ResponseBody)?;
            if action != Action::Continue {
                return Err(vm.bad(
                    name,
                    "paused the response body: it would never reach the client".into(),
                ));
            }
        }
        let _ = vm.take_effects(id);
        Ok(())
    }
}

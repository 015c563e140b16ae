//! Compile: bind the parsed policies to this proxy's enforcement point, convert what the
//! point cannot see in the fail-safe direction, and index the rules for matching.

use super::config::{Filter, Mode, PluginConfig, ServiceKind};
use super::decision::PolicyId;
use super::error::{ConfigError, ErrorKind, LoadNote, NoteKind};
use super::field::Written;
use super::hash::{FnvMap, FnvSet};
use super::intern::{IdTable, Interner, KeyIndex, StrId, Strings};
use super::matcher::{Cidr, Glob, PathTemplate, StrMatch};
use super::policy::{Action, Attr, AuthorizationPolicy, Field, RefKind, Scope, TargetRef};
use std::net::IpAddr;

/// An enforcement point: what the proxy can see decides which attributes are evaluable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Destination ztunnel, Layer 4.
    Ztunnel,
    /// Waypoint HTTP filter: every attribute.
    WaypointHttp,
    /// Waypoint network filter (TCP chain): no HTTP attributes.
    WaypointTcp,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::Ztunnel => "ztunnel",
            Point::WaypointHttp => "a waypoint",
            Point::WaypointTcp => "a waypoint's TCP filter",
        }
    }
}

/// A run of items in one of [`Compiled`]'s arrays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    /// The run from `start` to the end of `items` as it is now.
    fn since<T>(start: usize, items: &[T]) -> Span {
        Span {
            start: start as u32,
            len: items.len().saturating_sub(start) as u32,
        }
    }

    pub fn of<T>(self, items: &[T]) -> &[T] {
        let start = self.start as usize;
        items.get(start..start + self.len as usize).unwrap_or(&[])
    }
}

/// Grammar (a) with its text in [`Compiled::strings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Pattern {
    Exact(StrId),
    Prefix(StrId),
    Suffix(StrId),
    /// `*`: a non-empty value (Envoy regex `.+`).
    NonEmpty,
    /// `*` for headers, methods and hosts: present, even empty (Envoy `present_match`).
    Present,
}

impl Pattern {
    fn new(m: &StrMatch, strings: &mut Interner) -> Pattern {
        // Patterns are made from `&str` values, so their bytes are UTF-8.
        fn text(b: &[u8]) -> &str {
            std::str::from_utf8(b).unwrap_or("")
        }
        match m {
            StrMatch::Exact(b) => Pattern::Exact(strings.intern(text(b))),
            StrMatch::Prefix(b) => Pattern::Prefix(strings.intern(text(b))),
            StrMatch::Suffix(b) => Pattern::Suffix(strings.intern(text(b))),
            StrMatch::NonEmpty => Pattern::NonEmpty,
            StrMatch::Present => Pattern::Present,
        }
    }

    pub fn matches(self, strings: &Strings, value: &[u8]) -> bool {
        match self {
            Pattern::Exact(e) => value == strings.bytes(e),
            Pattern::Prefix(p) => value.starts_with(strings.bytes(p)),
            Pattern::Suffix(s) => value.ends_with(strings.bytes(s)),
            Pattern::NonEmpty => !value.is_empty(),
            Pattern::Present => true,
        }
    }

    /// Case-insensitive match; the pattern is lower case.
    pub fn matches_ignore_case(self, strings: &Strings, value: &[u8]) -> bool {
        match self {
            Pattern::Exact(e) => value.eq_ignore_ascii_case(strings.bytes(e)),
            Pattern::Prefix(p) => {
                let p = strings.bytes(p);
                value
                    .get(..p.len())
                    .is_some_and(|v| v.eq_ignore_ascii_case(p))
            }
            Pattern::Suffix(s) => {
                let s = strings.bytes(s);
                value
                    .len()
                    .checked_sub(s.len())
                    .and_then(|from| value.get(from..))
                    .is_some_and(|v| v.eq_ignore_ascii_case(s))
            }
            Pattern::NonEmpty => !value.is_empty(),
            Pattern::Present => true,
        }
    }
}

/// How a compiled [`Test`] matches one value. Small and flat: what needs more room is in a
/// table of [`Compiled`], once, and named by its index. Which attribute makes which matcher,
/// and how each is matched, is in `field/` (its module docs say where).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Matcher {
    /// Grammar (a) on the attribute's bytes (principal without `spiffe://`, ztunnel
    /// namespace, method, header, SNI, JWT claim).
    Str(Pattern),
    /// Case-insensitive grammar (a) (`hosts`); pattern lower-cased.
    Host(Pattern),
    /// Waypoint `principals: ["*"]`: any peer principal (Envoy regex `.+`).
    AnyPrincipal,
    /// Waypoint namespace regex `.*/ns/<ns>/.*` with a literal `<ns>`: the principal URI has
    /// the segment `/ns/<ns>/`.
    NamespaceSegment(StrId),
    /// Waypoint namespace regex `.*/ns/<glob>/.*` on the peer principal URI
    /// ([`Compiled::globs`]).
    NamespaceGlob(u32),
    /// `ns/sa` exact on the identity parsed as ztunnel parses it (ztunnel).
    ServiceAccount(StrId, StrId),
    /// `ns/sa` as istiod's regex `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?` (waypoint).
    ServiceAccountRegex(StrId, StrId),
    /// On the identity's trust domain: `*` any SPIFFE peer, else grammar (a) on the domain.
    TrustDomain(Pattern),
    /// [`Compiled::cidrs`].
    Cidr(u32),
    Port(u16),
    /// `paths` without templates, on the path without query.
    Path(Pattern),
    /// [`Compiled::templates`].
    PathTemplate(u32),
    /// `requestPrincipals`: issuer and subject matchers ([`Compiled::request_principals`]).
    RequestPrincipal(u32),
}

// Matchers are the bulk of a large configuration: what an attribute needs beyond 12 bytes
// goes in a table of `Compiled`.
const _: () = assert!(std::mem::size_of::<Matcher>() == 12);

/// What a test reads and how it was written: shared by every test of the same field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FieldName {
    pub attr: Attr,
    /// The API name (`principals`, `request.headers[x-token]`).
    pub api_name: StrId,
    pub written: Written,
}

/// A field's values, compiled and as written: shared by every test with the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValueList {
    /// Into [`Compiled::matchers`]: the values' matchers, then the not-values'.
    pub matchers: Span,
    pub values: u32,
    /// Into [`Compiled::written`]: the values as written, then the not-values, for
    /// explanations.
    pub written: Span,
    pub written_values: u32,
}

/// One attribute test: some value matches and no not-value matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Test {
    /// Into [`Compiled::fields`].
    pub field: u32,
    /// Into [`Compiled::value_lists`].
    pub values: u32,
}

impl Test {
    fn split<T>(items: &[T], span: Span, first: u32) -> (&[T], &[T]) {
        let all = span.of(items);
        all.split_at((first as usize).min(all.len()))
    }

    fn list(self, compiled: &Compiled) -> ValueList {
        compiled
            .value_lists
            .get(self.values as usize)
            .copied()
            .unwrap_or(ValueList {
                matchers: Span::default(),
                values: 0,
                written: Span::default(),
                written_values: 0,
            })
    }

    pub fn values_and_not<'a>(&self, compiled: &'a Compiled) -> (&'a [Matcher], &'a [Matcher]) {
        let list = self.list(compiled);
        Self::split(&compiled.matchers, list.matchers, list.values)
    }

    pub fn written_and_not<'a>(&self, compiled: &'a Compiled) -> (&'a [StrId], &'a [StrId]) {
        let list = self.list(compiled);
        Self::split(&compiled.written, list.written, list.written_values)
    }
}

/// `from[i].source` / `to[j].operation` / one `when` condition: every test must match. An
/// entry with no tests (all of them converted away) matches everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CEntry {
    /// Where it was written (`spec.rules[0].from[0].source`).
    pub path: StrId,
    /// Into [`Compiled::tests`].
    pub tests: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompiledRule {
    pub policy: PolicyId,
    pub index: u32,
    /// Into [`Compiled::clauses`]; every clause must match; none = matches everything
    /// (`rules: [{}]`). A clause (`from`, `to`, or one `when` condition) is a run of
    /// [`Compiled::entries`] of which some must match.
    pub clauses: Span,
}

/// What the engine reports about a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub namespace: String,
    pub name: String,
    pub action: Action,
    pub dry_run: bool,
    /// How many rules it has as written (0: an ALLOW that allows nothing, a default deny).
    pub rules: usize,
    key: String,
}

impl PolicyInfo {
    /// `namespace/name`.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Candidate rules by the most selective attribute each requires.
#[derive(Debug, Default, Clone)]
pub(crate) struct RuleIndex {
    /// Exact peer principal, without `spiffe://`.
    pub by_principal: KeyIndex,
    /// A `/ns/<namespace>/` segment of the peer principal.
    pub by_namespace: KeyIndex,
    pub by_port: Box<[(u16, Box<[u32]>)]>,
    pub by_method: KeyIndex,
    /// Rules with no indexable requirement: always evaluated.
    pub scan: Box<[u32]>,
    /// Every rule, in order (for explanations and audits).
    pub all: Box<[u32]>,
}

impl RuleIndex {
    fn bytes(&self) -> usize {
        self.by_principal.bytes()
            + self.by_namespace.bytes()
            + self.by_method.bytes()
            + std::mem::size_of_val(&*self.scan)
            + std::mem::size_of_val(&*self.all)
            + self
                .by_port
                .iter()
                .map(|(_, r)| 8 + std::mem::size_of_val(&**r))
                .sum::<usize>()
    }

    pub fn port(&self, port: u16) -> &[u32] {
        self.by_port
            .binary_search_by_key(&port, |(p, _)| *p)
            .ok()
            .and_then(|i| self.by_port.get(i))
            .map_or(&[], |(_, rules)| rules)
    }
}

/// The rules of the policies that apply to one target, split by what they do.
#[derive(Debug, Default, Clone)]
pub(crate) struct PolicySet {
    pub custom: RuleIndex,
    pub deny: RuleIndex,
    pub allow: RuleIndex,
    pub audit: RuleIndex,
    /// An enforced ALLOW policy applies (even one whose rules can never match).
    pub has_allow: bool,
    /// The enforced ALLOW policies that apply, for explanations: a rule-less one (a default
    /// deny) has no rule in `allow` to name it.
    pub allow_policies: Box<[PolicyId]>,
    pub dry_deny: RuleIndex,
    pub dry_allow: RuleIndex,
    pub has_dry_allow: bool,
    pub has_dry: bool,
}

/// The compiled form for one enforcement point: rules and their parts in flat arrays,
/// addressed by index, and every string once.
#[derive(Debug, Default, Clone)]
pub(crate) struct Compiled {
    pub rules: Vec<CompiledRule>,
    /// Per clause, its run of `entries`.
    pub clauses: Vec<Span>,
    pub entries: Vec<CEntry>,
    pub tests: Vec<Test>,
    pub fields: Vec<FieldName>,
    pub value_lists: Vec<ValueList>,
    pub matchers: Vec<Matcher>,
    pub written: Vec<StrId>,
    pub cidrs: Vec<Cidr>,
    pub globs: Vec<Glob>,
    pub templates: Vec<PathTemplate>,
    pub request_principals: Vec<(Pattern, Pattern)>,
    pub strings: Strings,
    pub sets: Vec<PolicySet>,
}

impl Compiled {
    pub fn clauses(&self, rule: &CompiledRule) -> &[Span] {
        rule.clauses.of(&self.clauses)
    }

    pub fn entries(&self, clause: Span) -> &[CEntry] {
        clause.of(&self.entries)
    }

    pub fn tests(&self, entry: &CEntry) -> &[Test] {
        entry.tests.of(&self.tests)
    }

    pub fn field(&self, test: &Test) -> Option<&FieldName> {
        self.fields.get(test.field as usize)
    }
}

/// A [`Compiled`] under construction, with what is only needed while building.
#[derive(Default)]
pub(crate) struct Builder {
    compiled: Compiled,
    strings: Interner,
    field_ids: FnvMap<FieldName, u32>,
    value_list_ids: IdTable,
    cidr_ids: FnvMap<Cidr, u32>,
    glob_ids: FnvMap<Glob, u32>,
    template_ids: FnvMap<PathTemplate, u32>,
    request_principal_ids: FnvMap<(Pattern, Pattern), u32>,
    /// The namespace each principal prefix spells out (`td/ns/team/sa/batch-` → `team`),
    /// for the indexes.
    prefix_namespaces: FnvMap<StrId, StrId>,
}

/// At most how much one policy adds to each of a [`Builder`]'s arrays.
struct Room {
    rules: usize,
    clauses: usize,
    entries: usize,
    tests: usize,
    matchers: usize,
    written: usize,
    text: usize,
}

impl Room {
    /// `aliases`: how many trust domains a principal can expand to.
    fn of(policy: &AuthorizationPolicy, aliases: usize) -> Room {
        let mut room = Room {
            rules: 0,
            clauses: 0,
            entries: 0,
            tests: 0,
            matchers: 0,
            written: 0,
            text: 0,
        };
        for rule in policy.rules.iter().flatten() {
            room.rules += 1;
            room.clauses +=
                usize::from(rule.from.is_some()) + usize::from(rule.to.is_some()) + rule.when.len();
            let entries = rule.from.iter().flatten().chain(rule.to.iter().flatten());
            let fields = entries.map(|e| (e.path.len(), e.fields.as_slice())).chain(
                rule.when
                    .iter()
                    .map(|c| (c.path.len(), std::slice::from_ref(c))),
            );
            for (path, fields) in fields {
                room.entries += 1;
                room.text += path;
                for f in fields {
                    room.tests += 1;
                    let values = f.values.len() + f.not_values.len();
                    room.written += values;
                    room.matchers += values * aliases.max(1);
                    let text: usize = f.values.iter().chain(&f.not_values).map(String::len).sum();
                    room.text += f.api_name.len() + text * (1 + aliases);
                }
            }
        }
        room
    }
}

/// How far along the policies the compiler is: `done` of `expected`.
#[derive(Clone, Copy)]
struct Progress {
    done: usize,
    expected: usize,
}

impl Progress {
    /// What an array of `len` items after `done` policies will likely hold after all of
    /// them, once enough have been seen to tell (a hundredth, at least eight).
    fn projected(self, len: usize) -> usize {
        if self.done < 8 || self.done * 100 < self.expected || self.done >= self.expected {
            return 0;
        }
        let projected = len as u64 * self.expected as u64 / self.done as u64;
        // A sixteenth more, for policies larger than those so far.
        (projected + projected / 16) as usize
    }
}

/// Makes room for `more` items in `items`. Wasm memory never shrinks, and an array that
/// moves when it grows leaves its old place as a hole that only smaller things can use: so
/// an array grows to its projected final size once that can be told, and by a quarter at
/// least (not double) otherwise.
fn make_room<T>(items: &mut Vec<T>, more: usize, progress: Progress) {
    if let Some(add) = room_to_add(items.len(), items.capacity(), more, progress) {
        items.reserve_exact(add);
    }
}

/// [`make_room`] for text.
fn make_text_room(text: &mut String, more: usize, progress: Progress) {
    if let Some(add) = room_to_add(text.len(), text.capacity(), more, progress) {
        text.reserve_exact(add);
    }
}

fn room_to_add(len: usize, capacity: usize, more: usize, progress: Progress) -> Option<usize> {
    (capacity - len < more).then(|| {
        let projected = progress.projected(len).saturating_sub(len);
        more.max(len / 4).max(projected)
    })
}

/// The index of `item` in `items`, added if new.
fn table_id<T: Clone + Eq + std::hash::Hash>(
    items: &mut Vec<T>,
    ids: &mut FnvMap<T, u32>,
    item: T,
) -> u32 {
    if let Some(id) = ids.get(&item) {
        return *id;
    }
    let id = items.len() as u32;
    items.push(item.clone());
    ids.insert(item, id);
    id
}

impl Builder {
    /// Room for one more policy (see [`make_room`]).
    fn reserve(&mut self, room: &Room, progress: Progress) {
        let c = &mut self.compiled;
        make_room(&mut c.rules, room.rules, progress);
        make_room(&mut c.clauses, room.clauses, progress);
        make_room(&mut c.entries, room.entries, progress);
        make_room(&mut c.tests, room.tests, progress);
        make_room(&mut c.value_lists, room.tests, progress);
        make_room(&mut c.matchers, room.matchers, progress);
        make_room(&mut c.written, room.written, progress);
        let (text, ends) = self.strings.text_and_ends();
        make_text_room(text, room.text, progress);
        make_room(ends, room.written + room.entries, progress);
    }

    /// The value list of the matchers and written values added since `matchers` and
    /// `written`: an equal list already built is used again, and the new copy taken back.
    fn value_list(
        &mut self,
        matchers: usize,
        values: u32,
        written: usize,
        written_values: u32,
    ) -> u32 {
        let c = &self.compiled;
        let list = ValueList {
            matchers: Span::since(matchers, &c.matchers),
            values,
            written: Span::since(written, &c.written),
            written_values,
        };
        let content = |l: &ValueList| {
            (
                l.matchers.of(&c.matchers),
                l.values,
                l.written.of(&c.written),
                l.written_values,
            )
        };
        let hash_of = |l: &ValueList| {
            let mut h = super::hash::Fnv::default();
            std::hash::Hash::hash(&content(l), &mut h);
            std::hash::Hasher::finish(&h)
        };
        let h = hash_of(&list);
        let same = |id: u32| {
            c.value_lists
                .get(id as usize)
                .is_some_and(|l| content(l) == content(&list))
        };
        if let Some(id) = self.value_list_ids.find(h, same) {
            self.compiled.matchers.truncate(matchers);
            self.compiled.written.truncate(written);
            return id;
        }
        let id = c.value_lists.len() as u32;
        let lists = &c.value_lists;
        self.value_list_ids
            .insert(id, h, |id| lists.get(id as usize).map_or(0, hash_of));
        self.compiled.value_lists.push(list);
        id
    }

    fn field_id(&mut self, field: &Field, written: Written) -> u32 {
        let name = FieldName {
            attr: field.attr.clone(),
            api_name: self.strings.intern(&field.api_name),
            written,
        };
        if let Some(id) = self.field_ids.get(&name) {
            return *id;
        }
        let id = self.compiled.fields.len() as u32;
        self.compiled.fields.push(name.clone());
        self.field_ids.insert(name, id);
        id
    }

    /// The grammar (a) pattern of a written value (`star_is_presence`: `*` is presence, as
    /// for headers, methods and hosts).
    pub(crate) fn pattern(&mut self, v: &str, star_is_presence: bool) -> Pattern {
        Pattern::new(&StrMatch::parse(v, star_is_presence), &mut self.strings)
    }

    pub(crate) fn pattern_of(&mut self, m: &StrMatch) -> Pattern {
        Pattern::new(m, &mut self.strings)
    }

    pub(crate) fn intern(&mut self, s: &str) -> StrId {
        self.strings.intern(s)
    }

    /// Adds one matcher to the value list being built.
    pub(crate) fn push(&mut self, m: Matcher) {
        self.compiled.matchers.push(m);
    }

    pub(crate) fn cidr(&mut self, cidr: Cidr) -> u32 {
        table_id(&mut self.compiled.cidrs, &mut self.cidr_ids, cidr)
    }

    pub(crate) fn glob(&mut self, glob: Glob) -> u32 {
        table_id(&mut self.compiled.globs, &mut self.glob_ids, glob)
    }

    pub(crate) fn template(&mut self, template: PathTemplate) -> u32 {
        table_id(
            &mut self.compiled.templates,
            &mut self.template_ids,
            template,
        )
    }

    pub(crate) fn request_principal(&mut self, pair: (Pattern, Pattern)) -> u32 {
        table_id(
            &mut self.compiled.request_principals,
            &mut self.request_principal_ids,
            pair,
        )
    }

    /// Records the namespace a principal prefix spells out, for the indexes.
    pub(crate) fn prefix_namespace(&mut self, prefix: StrId, namespace: &str) {
        let ns = self.strings.intern(namespace);
        self.prefix_namespaces.insert(prefix, ns);
    }

    /// Marks where the arrays end, to take back what a dropped clause added.
    fn mark(&self) -> [usize; 2] {
        let c = &self.compiled;
        [c.entries.len(), c.tests.len()]
    }

    /// Takes back the entries and tests of a dropped clause (what they share with others,
    /// value lists and strings, stays).
    fn truncate(&mut self, [entries, tests]: [usize; 2]) {
        let c = &mut self.compiled;
        c.entries.truncate(entries);
        c.tests.truncate(tests);
    }

    fn finish(self) -> Compiled {
        let mut c = self.compiled;
        c.strings = self.strings.finish();
        c.rules.shrink_to_fit();
        c.clauses.shrink_to_fit();
        c.entries.shrink_to_fit();
        c.tests.shrink_to_fit();
        c.fields.shrink_to_fit();
        c.value_lists.shrink_to_fit();
        c.matchers.shrink_to_fit();
        c.written.shrink_to_fit();
        c.cidrs.shrink_to_fit();
        c.globs.shrink_to_fit();
        c.templates.shrink_to_fit();
        c.request_principals.shrink_to_fit();
        c.sets.shrink_to_fit();
        c
    }
}

/// Which policy set applies to a destination.
#[derive(Debug, Default, Clone)]
pub(crate) struct Targets {
    /// Destination address → target.
    pub by_address: FnvMap<IpAddr, Vec<(u32, Vec<u16>)>>,
    /// The target when no address or host names one: the single address-less workload
    /// (ztunnel) or the waypoint itself (waypoint).
    pub fallback: Option<u32>,
    /// Per target: the set id in each compiled point.
    pub set_of: Vec<u32>,
    /// Display name of each target.
    pub names: Vec<String>,
}

impl Targets {
    /// Adds target `index`: its display name, and the destination addresses (with the ports a
    /// service listens on; none for a workload) that select it.
    fn push(&mut self, index: usize, name: String, addresses: &[IpAddr], ports: &[u16]) {
        self.names.push(name);
        for a in addresses {
            self.by_address
                .entry(*a)
                .or_default()
                .push((index as u32, ports.to_vec()));
        }
    }
}

/// The compiled configuration: what decides.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) config: PluginConfig,
    pub(crate) policies: Vec<PolicyInfo>,
    pub(crate) notes: Vec<LoadNote>,
    pub(crate) targets: Targets,
    /// Per point: `http` is used for requests at a waypoint (and for everything at ztunnel),
    /// `tcp` for connections at a waypoint. Either may be absent when the filter kind makes
    /// it unreachable.
    pub(crate) http: Option<Compiled>,
    pub(crate) tcp: Option<Compiled>,
    /// The trust domains a ztunnel-mode proxy accepts peers from.
    pub(crate) trusted_domains: Vec<String>,
    /// See [`Engine::jwt_depth`].
    pub(crate) jwt_depth: usize,
}

impl Engine {
    /// Parses, validates and compiles a plugin configuration (JSON), each policy as soon as
    /// it has been read: the parsed policies never exist all at once.
    pub fn from_json(bytes: &[u8]) -> Result<Engine, ConfigError> {
        match Self::compile_streamed(bytes) {
            Some(compiler) => compiler.finish(),
            None => Engine::from_config(PluginConfig::from_json(bytes)?),
        }
    }

    /// [`Engine::from_json`], dropping the JSON once every policy is compiled, before the
    /// rule indexes are built: the bytes and the indexes under construction are never held
    /// at once (what a Wasm module, whose memory never shrinks, keeps as its peak).
    pub fn from_json_bytes(bytes: Vec<u8>) -> Result<Engine, ConfigError> {
        match Self::compile_streamed(&bytes) {
            Some(compiler) => {
                drop(bytes);
                compiler.finish()
            }
            None => Engine::from_config(PluginConfig::from_json(&bytes)?),
        }
    }

    /// Every policy compiled as it is read; `None` for what the one-pass reading does not
    /// take, which is then read as a whole to word the error.
    fn compile_streamed(bytes: &[u8]) -> Option<Compiler> {
        super::policy_stream::read(
            bytes,
            |config, expected| Compiler::new(config, false, expected),
            |compiler, policy| compiler.add(&policy),
        )
    }

    /// Compiles for the points the configured filter can reach.
    pub fn from_config(config: PluginConfig) -> Result<Engine, ConfigError> {
        build(config, false)
    }

    /// Compiles every point of the mode (a waypoint's HTTP and TCP forms): for tools that
    /// replay both requests and plain connections against one configuration.
    pub fn from_config_all_points(config: PluginConfig) -> Result<Engine, ConfigError> {
        build(config, true)
    }

    /// The configuration compiled, without its `policies`: they live on only in compiled
    /// form (see [`Engine::policies`]).
    pub fn config(&self) -> &PluginConfig {
        &self.config
    }

    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    /// Policies in Envoy's reporting order (by istiod's generated RBAC policy name);
    /// [`PolicyId`] indexes this.
    pub fn policies(&self) -> &[PolicyInfo] {
        &self.policies
    }

    pub fn policy(&self, id: PolicyId) -> Option<&PolicyInfo> {
        self.policies.get(id.0 as usize)
    }

    /// How deep into a verified JWT payload any rule reads: a claim path of `n` keys reads
    /// the value at depth `n` (the payload's own claims are depth 1) and, when it is a list,
    /// the strings at depth `n + 1`; `requestPrincipals` read `iss` and `sub` at depth 1.
    /// Values below this depth can never change a decision, so a host may leave them unread
    /// (and must not discard the token because of them). 0 when no rule reads the JWT.
    pub fn jwt_depth(&self) -> usize {
        self.jwt_depth
    }

    /// Bytes held by each table of the compiled forms (elements × their size; strings by
    /// their text), for memory measurements.
    #[doc(hidden)]
    pub fn table_bytes(&self) -> Vec<(&'static str, usize)> {
        fn bytes<T>(items: &[T]) -> usize {
            std::mem::size_of_val(items)
        }
        let mut out: Vec<(&'static str, usize)> = Vec::new();
        for c in self.http.iter().chain(&self.tcp) {
            let index = |i: &RuleIndex| i.bytes();
            let sets: usize = c
                .sets
                .iter()
                .map(|s| {
                    [
                        &s.custom,
                        &s.deny,
                        &s.allow,
                        &s.audit,
                        &s.dry_deny,
                        &s.dry_allow,
                    ]
                    .into_iter()
                    .map(index)
                    .sum::<usize>()
                })
                .sum();
            out.extend([
                ("rules", bytes(&c.rules)),
                ("clauses", bytes(&c.clauses)),
                ("entries", bytes(&c.entries)),
                ("tests", bytes(&c.tests)),
                ("value lists", bytes(&c.value_lists)),
                ("matchers", bytes(&c.matchers)),
                ("written", bytes(&c.written)),
                ("cidrs", bytes(&c.cidrs)),
                ("strings", c.strings.bytes_held()),
                ("indexes", sets),
            ]);
        }
        out
    }

    /// The load-time report: each converted or unattached policy, once.
    pub fn notes(&self) -> &[LoadNote] {
        &self.notes
    }
}

fn build(mut config: PluginConfig, all_points: bool) -> Result<Engine, ConfigError> {
    let policies = std::mem::take(&mut config.policies);
    let mut compiler = Compiler::new(config, all_points, policies.len());
    // Each parsed policy is dropped once compiled.
    for policy in policies {
        compiler.add(&policy);
    }
    compiler.finish()
}

/// What compiling keeps of a policy once its rules are compiled: what binds it to targets,
/// files its rules, and names it.
pub(crate) struct PolicyHead {
    namespace: String,
    name: String,
    scope: Scope,
    action: Action,
    dry_run: bool,
    /// How many rules it has as written.
    rules: usize,
    dry_run_annotation_error: Option<String>,
}

impl PolicyHead {
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A load note of one policy, given when its turn comes in reporting order.
struct PendingNote {
    note: LoadNote,
    /// Given only if the same note was not given yet.
    once: bool,
}

/// One point's compilation in progress.
struct PointBuild {
    point: Point,
    builder: Builder,
    /// Per policy, in the order they were added: its run of rules and its notes.
    runs: Vec<(u32, u32)>,
    notes: Vec<Vec<PendingNote>>,
}

/// Compiles policies one at a time, as they are read, so that no more than one of them
/// exists in parsed form; [`Compiler::finish`] orders and indexes them.
pub(crate) struct Compiler {
    /// The configuration without its policies.
    config: PluginConfig,
    bundle: Vec<String>,
    heads: Vec<PolicyHead>,
    /// How many policies are coming, to size the arrays (see [`make_room`]).
    expected: usize,
    points: Vec<PointBuild>,
    jwt_depth: usize,
}

impl Compiler {
    /// For the points the configured filter can reach, or every point of the mode, and
    /// about `expected` policies.
    pub(crate) fn new(mut config: PluginConfig, all_points: bool, expected: usize) -> Compiler {
        let (want_http, want_tcp) = match (config.mode, config.filter) {
            (Mode::Ztunnel, _) => (true, false),
            (Mode::Waypoint, _) if all_points => (true, true),
            (Mode::Waypoint, Filter::Http) => (true, false),
            (Mode::Waypoint, Filter::Network) => (false, true),
        };
        config.policies = Vec::new();
        let mut points = Vec::new();
        let new_point = |point| PointBuild {
            point,
            builder: Builder::default(),
            runs: Vec::new(),
            notes: Vec::new(),
        };
        if want_http {
            points.push(new_point(match config.mode {
                Mode::Ztunnel => Point::Ztunnel,
                Mode::Waypoint => Point::WaypointHttp,
            }));
        }
        if want_tcp {
            points.push(new_point(Point::WaypointTcp));
        }
        Compiler {
            bundle: trust_bundle(&config),
            config,
            heads: Vec::with_capacity(expected),
            expected,
            points,
            jwt_depth: 0,
        }
    }

    /// Compiles one policy for every point; only its head is kept.
    pub(crate) fn add(&mut self, policy: &AuthorizationPolicy) {
        let arrival = PolicyId(self.heads.len() as u32);
        let room = Room::of(policy, self.bundle.len());
        let progress = Progress {
            done: self.heads.len(),
            expected: self.expected,
        };
        for p in &mut self.points {
            p.builder.reserve(&room, progress);
            let start = p.builder.compiled.rules.len() as u32;
            let mut notes = Vec::new();
            compile_policy(
                &self.config,
                policy,
                arrival,
                p.point,
                &self.bundle,
                &mut notes,
                &mut p.builder,
            );
            p.runs.push((start, p.builder.compiled.rules.len() as u32));
            notes.shrink_to_fit();
            p.notes.push(notes);
        }
        self.jwt_depth = self.jwt_depth.max(jwt_depth(policy));
        self.heads.push(PolicyHead {
            namespace: policy.namespace.clone(),
            name: policy.name.clone(),
            scope: policy.scope.clone(),
            action: policy.action,
            dry_run: policy.dry_run,
            rules: policy.rules.as_ref().map_or(0, Vec::len),
            dry_run_annotation_error: policy.dry_run_annotation_error.clone(),
        });
    }

    pub(crate) fn finish(self) -> Result<Engine, ConfigError> {
        let Compiler {
            config,
            bundle,
            heads,
            points,
            jwt_depth,
            ..
        } = self;
        let order = report_order(&heads);
        let sorted: Vec<&PolicyHead> = order
            .iter()
            .filter_map(|i| heads.get(*i as usize))
            .collect();
        refuse_duplicate_names(&sorted)?;

        let mut notes = Notes::default();
        // Which policies each target gets.
        let (mut targets, target_policies) = bind_targets(&config, &sorted, &mut notes);
        let (http, tcp, set_of) = finish_points(
            &config,
            &sorted,
            &order,
            &target_policies,
            points,
            &mut notes,
        )?;
        targets.set_of = set_of;
        push_dry_run_annotation_notes(&sorted, &mut notes);
        drop(sorted);
        let policies = policy_infos(heads, &order);

        Ok(Engine {
            jwt_depth,
            trusted_domains: bundle,
            config,
            policies,
            notes: notes.list,
            targets,
            http,
            tcp,
        })
    }
}

/// The policies' ids in Envoy's reporting order.
///
/// istiod names each RBAC policy `ns[<namespace>]-policy[<name>]-rule[<index>]` (istio/istio
/// `pilot/pkg/security/authz/builder/builder.go`) and Envoy keeps them in a `std::map`,
/// reporting the first match in that string order (envoyproxy/envoy
/// `source/extensions/filters/common/rbac/engine_impl.h`). PolicyIds are assigned in the
/// order of that name's policy part, and rules within a policy in the order of their index's
/// decimal string (see `compile_policy`), so the lowest matching rule id is the one Envoy
/// reports: `deny-x` before `deny`, namespace `a-b` before `a`.
fn report_order(heads: &[PolicyHead]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..heads.len() as u32).collect();
    order.sort_by_cached_key(|i| {
        heads
            .get(*i as usize)
            .map(|p| envoy_policy_prefix(&p.namespace, &p.name))
            // A `String` key, as the rules' sort has: one sort instantiation for both.
            .unwrap_or_default()
    });
    order
}

/// Refuses a namespace/name given twice (sorted, the two sit side by side).
fn refuse_duplicate_names(sorted: &[&PolicyHead]) -> Result<(), ConfigError> {
    let Some(dup) = sorted
        .windows(2)
        .find(|w| matches!(w, [a, b] if a.namespace == b.namespace && a.name == b.name))
        .and_then(|w| w.first())
    else {
        return Ok(());
    };
    Err(ConfigError::new(
        ErrorKind::Duplicate,
        "policies",
        format!(
            "duplicate policy {}: a namespace/name may appear once",
            dup.key()
        ),
    )
    .in_policy(&dup.key()))
}

/// The compiled form of each point (HTTP or ztunnel, and the waypoint's TCP one), and the
/// set id of each target.
type FinishedPoints = (Option<Compiled>, Option<Compiled>, Vec<u32>);

/// Finishes every point; notes are the first point's plus what later ones add.
fn finish_points(
    config: &PluginConfig,
    sorted: &[&PolicyHead],
    order: &[u32],
    target_policies: &[Vec<u32>],
    points: Vec<PointBuild>,
    notes: &mut Notes,
) -> Result<FinishedPoints, ConfigError> {
    let (mut http, mut tcp) = (None, None);
    let mut set_of = Vec::new();
    for (n, p) in points.into_iter().enumerate() {
        let point = p.point;
        let (compiled, ids) = if n == 0 {
            finish_point(config, sorted, order, target_policies, p, notes)?
        } else {
            // A second compilation reports its own conversions; keep only the new ones.
            let mut own = Notes::default();
            let done = finish_point(config, sorted, order, target_policies, p, &mut own)?;
            for note in own.list {
                notes.push_once(note);
            }
            done
        };
        // The set ids per target are the same in every point (same policy lists, same
        // dedupe order), so they are kept once.
        if set_of.is_empty() {
            set_of = ids;
        }
        match point {
            Point::WaypointTcp => tcp = Some(compiled),
            Point::Ztunnel | Point::WaypointHttp => http = Some(compiled),
        }
    }
    Ok((http, tcp, set_of))
}

/// Load-time notes that concern a policy as a whole.
fn push_dry_run_annotation_notes(sorted: &[&PolicyHead], notes: &mut Notes) {
    for p in sorted {
        if let Some(msg) = &p.dry_run_annotation_error {
            notes.push(LoadNote {
                policy: p.key(),
                kind: NoteKind::Info,
                message: msg.clone(),
            });
        }
    }
}

/// What the engine keeps of each policy, in reporting order; the names move from the heads,
/// which are not needed any more.
fn policy_infos(mut heads: Vec<PolicyHead>, order: &[u32]) -> Vec<PolicyInfo> {
    let mut policies = Vec::with_capacity(order.len());
    for i in order {
        if let Some(p) = heads.get_mut(*i as usize) {
            policies.push(PolicyInfo {
                key: p.key(),
                namespace: std::mem::take(&mut p.namespace),
                name: std::mem::take(&mut p.name),
                action: p.action,
                dry_run: p.dry_run,
                rules: p.rules,
            });
        }
    }
    policies
}

/// Puts one point's rules in reporting order, gives its notes in that order, and builds a
/// rule set per distinct policy list.
fn finish_point(
    config: &PluginConfig,
    sorted: &[&PolicyHead],
    order: &[u32],
    target_policies: &[Vec<u32>],
    p: PointBuild,
    notes: &mut Notes,
) -> Result<(Compiled, Vec<u32>), ConfigError> {
    let PointBuild {
        mut builder,
        runs,
        notes: mut pending,
        ..
    } = p;
    let added = std::mem::take(&mut builder.compiled.rules);
    let mut rules = Vec::with_capacity(added.len());
    let mut first_rule_of: Vec<(u32, u32)> = Vec::with_capacity(order.len());
    for (pid, arrival) in order.iter().enumerate() {
        let start = rules.len() as u32;
        if let Some((from, to)) = runs.get(*arrival as usize) {
            for rule in added.get(*from as usize..*to as usize).unwrap_or(&[]) {
                rules.push(CompiledRule {
                    policy: PolicyId(pid as u32),
                    ..*rule
                });
            }
        }
        first_rule_of.push((start, rules.len() as u32));
        for n in pending
            .get_mut(*arrival as usize)
            .map(std::mem::take)
            .unwrap_or_default()
        {
            if n.once {
                notes.push_once(n.note);
            } else {
                notes.push(n.note);
            }
        }
    }
    drop(added);
    builder.compiled.rules = rules;
    // One set per distinct policy list (many workloads share theirs). Each set indexes
    // its own copy of its rules, so distinct lists cost their sizes added up: count
    // that before building anything, and refuse what would not fit.
    let mut set_ids: FnvMap<&[u32], u32> = FnvMap::default();
    let mut entries: u64 = 0;
    for list in target_policies {
        if !set_ids.contains_key(list.as_slice()) {
            set_ids.insert(list, 0);
            entries += list
                .iter()
                .filter_map(|pid| first_rule_of.get(*pid as usize))
                .map(|(start, end)| u64::from(end - start))
                .sum::<u64>();
        }
    }
    if entries > MAX_INDEXED_RULES {
        return Err(too_many_indexed_rules(
            config,
            sorted.len(),
            entries,
            set_ids.len(),
        ));
    }
    set_ids.clear();
    // What was only needed while compiling goes before the indexes are built.
    let prefix_namespaces = std::mem::take(&mut builder.prefix_namespaces);
    let mut compiled = builder.finish();
    let mut set_of = Vec::with_capacity(target_policies.len());
    for list in target_policies {
        let id = match set_ids.get(list.as_slice()) {
            Some(id) => *id,
            None => {
                let set = build_set(&compiled, &prefix_namespaces, sorted, list, &first_rule_of);
                let id = compiled.sets.len() as u32;
                compiled.sets.push(set);
                set_ids.insert(list, id);
                id
            }
        };
        set_of.push(id);
    }
    compiled.sets.shrink_to_fit();
    Ok((compiled, set_of))
}

/// How deep into the JWT payload the policy's rules read (see [`Engine::jwt_depth`]).
fn jwt_depth(policy: &AuthorizationPolicy) -> usize {
    policy
        .rules
        .iter()
        .flatten()
        .flat_map(|r| {
            r.from
                .iter()
                .flatten()
                .chain(r.to.iter().flatten())
                .flat_map(|e| e.fields.iter())
                .chain(r.when.iter())
        })
        .map(|f| f.attr.jwt_depth())
        .max()
        .unwrap_or(0)
}

/// The part of istiod's RBAC policy name that names the policy:
/// `ns[<namespace>]-policy[<name>]-rule[`. Namespaces and names are DNS labels, so no
/// policy's prefix is a prefix of another's and sorting by it sorts the full names.
fn envoy_policy_prefix(namespace: &str, name: &str) -> String {
    format!("ns[{namespace}]-policy[{name}]-rule[")
}

/// How many rule entries the per-destination rule sets may hold in all (each distinct set of
/// policies, one per workload or service whose policies differ, indexes its own rules).
/// A ztunnel enforcing for thousands of workloads that each have their own selector policy
/// under thousands of namespace-wide ones needs workloads × policies entries: about 150 MB
/// and seconds of loading per million. Past this bound the configuration is refused with an
/// error saying so, rather than stalling the proxy (fail closed: the last good
/// configuration, or deny-all, stays in force).
pub const MAX_INDEXED_RULES: u64 = 2_000_000;

fn too_many_indexed_rules(
    config: &PluginConfig,
    policies: usize,
    entries: u64,
    sets: usize,
) -> ConfigError {
    let (field, what) = match config.mode {
        Mode::Ztunnel => ("workloads", format!("{} workloads", config.workloads.len())),
        Mode::Waypoint => ("services", format!("{} services", config.services.len())),
    };
    ConfigError::new(
        ErrorKind::TooMany,
        field,
        format!(
            "{what} with {policies} policies need {entries} rule entries in {sets} distinct per-destination rule sets, \
             more than the {MAX_INDEXED_RULES} one proxy indexes; split the destinations across \
             more proxies or give workloads that share policies the same selectors"
        ),
    )
}

/// The load report under construction: every note in order, and the set of those already
/// given so that a note can be added once in constant time (a `Vec::contains` per CUSTOM
/// policy made loading 50,000 of them quadratic).
#[derive(Default)]
struct Notes {
    list: Vec<LoadNote>,
    seen: FnvSet<LoadNote>,
}

impl Notes {
    fn push(&mut self, note: LoadNote) {
        self.seen.insert(note.clone());
        self.list.push(note);
    }

    /// Adds `note` unless the same note was already given.
    fn push_once(&mut self, note: LoadNote) {
        if !self.seen.contains(&note) {
            self.push(note);
        }
    }
}

/// The trust domain and its aliases (waypoint `trustdomain.Bundle`); `cluster.local` in a
/// policy always means the mesh's own domain.
fn trust_bundle(config: &PluginConfig) -> Vec<String> {
    let mut bundle = vec![config.trust_domain.clone()];
    for alias in &config.trust_domain_aliases {
        if !bundle.contains(alias) {
            bundle.push(alias.clone());
        }
    }
    bundle
}

/// Decides which policies apply to which target (per target, its policies in order), and
/// reports those that apply nowhere here.
fn bind_targets(
    config: &PluginConfig,
    sorted: &[&PolicyHead],
    notes: &mut Notes,
) -> (Targets, Vec<Vec<u32>>) {
    match config.mode {
        Mode::Ztunnel => {
            note_unbound_at_ztunnel(sorted, notes);
            bind_workloads(config, sorted)
        }
        Mode::Waypoint => {
            let (to_services, to_waypoint) = attach_by_target_refs(config, sorted, notes);
            bind_services(config, to_services, to_waypoint)
        }
    }
}

fn note(notes: &mut Notes, p: &PolicyHead, kind: NoteKind, message: String) {
    notes.push(LoadNote {
        policy: p.key(),
        kind,
        message,
    })
}

/// ztunnel: a policy attached by targetRefs is a waypoint's; a selector without labels
/// selects every workload in its scope here.
fn note_unbound_at_ztunnel(sorted: &[&PolicyHead], notes: &mut Notes) {
    for p in sorted {
        match &p.scope {
            Scope::TargetRefs(_) => note(
                notes,
                p,
                NoteKind::NotAttached,
                "attached by targetRefs: enforced by a waypoint, not by ztunnel".into(),
            ),
            Scope::Selector(labels) if labels.is_empty() => note(
                notes,
                p,
                NoteKind::Info,
                "selector without labels: applied to every workload in its scope (istiod's ztunnel conversion may attach it to none)".into(),
            ),
            _ => {}
        }
    }
}

/// ztunnel: each workload's policies, and the workloads by address.
fn bind_workloads(config: &PluginConfig, sorted: &[&PolicyHead]) -> (Targets, Vec<Vec<u32>>) {
    let mut targets = Targets::default();
    let mut lists: Vec<Vec<u32>> = Vec::new();
    let root = config.root_namespace.as_str();
    // Which policies reach a workload: those of its namespace or the root namespace
    // that have no selector, or whose selector's labels are all among its labels.
    // Indexed by namespace and by one label of each selector, so that each workload
    // looks only at policies that can apply to it (comparing every workload with
    // every policy made thousands of workloads, each with its own policy, quadratic).
    let mut unselected: FnvMap<&str, Vec<u32>> = FnvMap::default();
    let mut by_label: FnvMap<(&str, &str, &str), Vec<u32>> = FnvMap::default();
    for (pid, p) in sorted.iter().enumerate() {
        match &p.scope {
            Scope::Namespace => unselected.entry(&p.namespace).or_default().push(pid as u32),
            Scope::Selector(labels) => match labels.first() {
                None => unselected.entry(&p.namespace).or_default().push(pid as u32),
                Some((k, v)) => by_label
                    .entry((&p.namespace, k, v))
                    .or_default()
                    .push(pid as u32),
            },
            Scope::TargetRefs(_) => {}
        }
    }
    for (wi, w) in config.workloads.iter().enumerate() {
        let namespaces: &[&str] = if w.namespace == root {
            &[root]
        } else {
            &[root, &w.namespace]
        };
        let mut list: Vec<u32> = Vec::new();
        for ns in namespaces {
            if let Some(pids) = unselected.get(ns) {
                list.extend_from_slice(pids);
            }
            for (k, v) in &w.labels {
                for pid in by_label
                    .get(&(*ns, k.as_str(), v.as_str()))
                    .into_iter()
                    .flatten()
                {
                    let selected = matches!(
                        sorted.get(*pid as usize).map(|p| &p.scope),
                        Some(Scope::Selector(labels)) if labels.iter().all(|(k, v)| {
                            w.labels.iter().any(|(wk, wv)| wk == k && wv == v)
                        })
                    );
                    if selected {
                        list.push(*pid);
                    }
                }
            }
        }
        // Policy order, each once (a workload's labels can name one selector twice
        // only if its labels repeat a key, but stay safe).
        sort_ids(&mut list);
        list.dedup();
        lists.push(list);
        targets.push(
            wi,
            format!("workload {}/{}", w.namespace, w.name),
            &w.addresses,
            &[],
        );
    }
    let addressless: Vec<usize> = config
        .workloads
        .iter()
        .enumerate()
        .filter(|(_, w)| w.addresses.is_empty())
        .map(|(i, _)| i)
        .collect();
    if let [only] = addressless.as_slice() {
        targets.fallback = Some(*only as u32);
    }
    (targets, lists)
}

/// waypoint: for every policy, the services it attaches to (per service, its policies) and
/// whether it binds to the waypoint itself (then it applies to all traffic through it).
fn attach_by_target_refs(
    config: &PluginConfig,
    sorted: &[&PolicyHead],
    notes: &mut Notes,
) -> (Vec<Vec<u32>>, Vec<u32>) {
    // For every policy: which services it attaches to, and whether it binds to the
    // waypoint itself (then it applies to all traffic through it).
    let mut to_services: Vec<Vec<u32>> = vec![Vec::new(); config.services.len()];
    let mut to_waypoint: Vec<u32> = Vec::new();
    for (pid, p) in sorted.iter().enumerate() {
        let refs = match &p.scope {
            Scope::TargetRefs(refs) => refs,
            Scope::Selector(_) => {
                note(
                    notes,
                    p,
                    NoteKind::NotAttached,
                    "bound by selector: enforced by the destination ztunnel, not by a waypoint"
                        .into(),
                );
                continue;
            }
            Scope::Namespace => {
                note(notes, p, NoteKind::NotAttached, "no selector or targetRefs: enforced by the destination ztunnel, not by a waypoint".into());
                continue;
            }
        };
        let mut whole = false;
        for r in refs {
            match ref_target(config, p, r) {
                RefTarget::Services(services) => {
                    for si in services {
                        if let Some(list) = to_services.get_mut(si) {
                            list.push(pid as u32);
                        }
                    }
                }
                RefTarget::Waypoint => whole = true,
                RefTarget::Nowhere(why) => note(
                    notes,
                    p,
                    NoteKind::NotAttached,
                    format!("targetRef {}: {why}", r.describe()),
                ),
            }
        }
        if whole {
            to_waypoint.push(pid as u32);
        }
    }
    (to_services, to_waypoint)
}

/// Where one targetRef of a policy attaches it in this waypoint.
enum RefTarget {
    /// These services (indexes into the configuration's services).
    Services(Vec<usize>),
    /// The waypoint itself: all traffic through it.
    Waypoint,
    /// Nowhere, and why.
    Nowhere(String),
}

/// Istio's attachment rules for one targetRef: a Service or ServiceEntry in the policy's
/// namespace, this waypoint's Gateway in its namespace, or this waypoint's GatewayClass from
/// the root namespace.
fn ref_target(config: &PluginConfig, p: &PolicyHead, r: &TargetRef) -> RefTarget {
    let wp = config.waypoint.as_ref();
    match r.supported_kind() {
        None => RefTarget::Nowhere("Istio does not attach AuthorizationPolicy to this kind".into()),
        Some(kind @ (RefKind::Service | RefKind::ServiceEntry)) => {
            let kind = if kind == RefKind::Service {
                ServiceKind::Service
            } else {
                ServiceKind::ServiceEntry
            };
            let services: Vec<usize> = config
                .services
                .iter()
                .enumerate()
                .filter(|(_, s)| s.kind == kind && s.name == r.name && s.namespace == p.namespace)
                .map(|(si, _)| si)
                .collect();
            if services.is_empty() {
                RefTarget::Nowhere(format!(
                    "not a service this waypoint serves (services in {} only)",
                    p.namespace
                ))
            } else {
                RefTarget::Services(services)
            }
        }
        Some(RefKind::Gateway) => match wp {
            Some(w) if w.name == r.name && w.namespace == p.namespace => RefTarget::Waypoint,
            _ => RefTarget::Nowhere("not this waypoint".into()),
        },
        Some(RefKind::GatewayClass) => {
            let root = config.root_namespace.as_str();
            let class = wp
                .map(|w| w.gateway_class.as_str())
                .unwrap_or("istio-waypoint");
            if p.namespace != root {
                RefTarget::Nowhere(format!(
                    "a GatewayClass policy must be in the root namespace {root}"
                ))
            } else if r.name != class {
                RefTarget::Nowhere(format!("this waypoint's class is {class}"))
            } else {
                RefTarget::Waypoint
            }
        }
    }
}

/// waypoint: each service's policies (its own and the waypoint's), the waypoint's own as
/// the last target, and the services by address.
fn bind_services(
    config: &PluginConfig,
    to_services: Vec<Vec<u32>>,
    to_waypoint: Vec<u32>,
) -> (Targets, Vec<Vec<u32>>) {
    let mut targets = Targets::default();
    let mut lists: Vec<Vec<u32>> = Vec::new();
    for (si, s) in config.services.iter().enumerate() {
        let mut list: Vec<u32> = to_services.get(si).cloned().unwrap_or_default();
        list.extend(to_waypoint.iter().copied());
        sort_ids(&mut list);
        list.dedup();
        lists.push(list);
        targets.push(
            si,
            format!("service {}/{}", s.namespace, s.name),
            &s.addresses,
            &s.ports,
        );
    }
    let own = lists.len() as u32;
    lists.push(to_waypoint);
    targets.names.push(match &config.waypoint {
        Some(w) => format!("waypoint {}/{} (no service)", w.namespace, w.name),
        None => "waypoint (no service)".into(),
    });
    // One service without addresses: the plugin sits on that service's own chain
    // and every request is for it. Several services all carry
    // addresses (config.rs rejects the rest), so anything else is for the waypoint.
    targets.fallback = match config.services.as_slice() {
        [only] if only.addresses.is_empty() => Some(0),
        _ => Some(own),
    };
    (targets, lists)
}

/// A [`RuleIndex`] under construction: `(key, rule)` pairs, rules in order.
#[derive(Default)]
struct IndexBuilder {
    by_principal: Vec<(StrId, u32)>,
    by_namespace: Vec<(StrId, u32)>,
    /// Ports widened to `u32`: every pair list here sorts with one instantiation.
    by_port: Vec<(u32, u32)>,
    by_method: Vec<(StrId, u32)>,
    scan: Vec<u32>,
    all: Vec<u32>,
}

impl IndexBuilder {
    fn finish(self, strings: &Strings) -> RuleIndex {
        // Pairs are distinct (a rule is filed once per key): sorting them whole keeps each
        // key's rules in order, without the buffer a stable sort takes.
        let keyed = |mut pairs: Vec<(StrId, u32)>| {
            sort_pairs(&mut pairs);
            KeyIndex::from_sorted(strings, &pairs)
        };
        let mut ports = self.by_port;
        sort_pairs(&mut ports);
        let mut by_port: Vec<(u16, Box<[u32]>)> = Vec::new();
        for chunk in ports.chunk_by(|a, b| a.0 == b.0) {
            if let Some((port, _)) = chunk.first() {
                // Filed from a `u16` (see `insert_rule`), so the cast keeps it.
                by_port.push((*port as u16, chunk.iter().map(|(_, r)| *r).collect()));
            }
        }
        RuleIndex {
            by_principal: keyed(self.by_principal),
            by_namespace: keyed(self.by_namespace),
            by_port: by_port.into_boxed_slice(),
            by_method: keyed(self.by_method),
            scan: self.scan.into_boxed_slice(),
            all: self.all.into_boxed_slice(),
        }
    }
}

/// Sorts `(key, rule)` pairs. Every sort of plain ids goes through this one function: each
/// element type given to the standard library's sort is another 3 to 4 kB of module.
fn sort_pairs(pairs: &mut [(u32, u32)]) {
    pairs.sort_unstable();
}

/// Sorts ids, through [`sort_pairs`] (see there).
fn sort_ids(ids: &mut Vec<u32>) {
    let mut pairs: Vec<(u32, u32)> = ids.iter().map(|&id| (id, 0)).collect();
    sort_pairs(&mut pairs);
    ids.clear();
    ids.extend(pairs.iter().map(|&(id, _)| id));
}

/// Builds the rule indexes for one target's policy list.
fn build_set(
    compiled: &Compiled,
    prefix_namespaces: &FnvMap<StrId, StrId>,
    sorted: &[&PolicyHead],
    list: &[u32],
    first_rule_of: &[(u32, u32)],
) -> PolicySet {
    let mut set = PolicySet::default();
    let mut allow_policies = Vec::new();
    let [mut custom, mut deny, mut allow, mut audit, mut dry_deny, mut dry_allow] =
        std::array::from_fn(|_| IndexBuilder::default());
    for pid in list {
        let Some(policy) = sorted.get(*pid as usize) else {
            continue;
        };
        let Some((start, end)) = first_rule_of.get(*pid as usize) else {
            continue;
        };
        let index = match (policy.action, policy.dry_run) {
            (Action::Allow, false) => {
                set.has_allow = true;
                allow_policies.push(PolicyId(*pid));
                &mut allow
            }
            (Action::Allow, true) => {
                set.has_dry = true;
                set.has_dry_allow = true;
                &mut dry_allow
            }
            (Action::Deny, false) => &mut deny,
            (Action::Custom, false) => &mut custom,
            (Action::Deny | Action::Custom, true) => {
                set.has_dry = true;
                &mut dry_deny
            }
            // AUDIT never enforces; a dry-run AUDIT is still only recorded.
            (Action::Audit, _) => &mut audit,
        };
        for rid in *start..*end {
            if let Some(rule) = compiled.rules.get(rid as usize) {
                insert_rule(compiled, prefix_namespaces, index, rid, rule);
            }
        }
    }
    let strings = &compiled.strings;
    set.allow_policies = allow_policies.into_boxed_slice();
    set.custom = custom.finish(strings);
    set.deny = deny.finish(strings);
    set.allow = allow.finish(strings);
    set.audit = audit.finish(strings);
    set.dry_deny = dry_deny.finish(strings);
    set.dry_allow = dry_allow.finish(strings);
    set
}

/// Files a rule under the most selective attribute it requires.
fn insert_rule(
    compiled: &Compiled,
    prefix_namespaces: &FnvMap<StrId, StrId>,
    index: &mut IndexBuilder,
    rid: u32,
    rule: &CompiledRule,
) {
    index.all.push(rid);
    if let Some(keys) = required_identity(compiled, prefix_namespaces, rule) {
        for (kind, key) in keys {
            if kind == IdKey::PRINCIPAL {
                index.by_principal.push((key, rid));
            } else {
                index.by_namespace.push((key, rid));
            }
        }
        return;
    }
    if let Some(keys) = required_exact(
        compiled,
        rule,
        |a| matches!(a, Attr::Port),
        |m| match m {
            Matcher::Port(p) => Some(u32::from(*p)),
            _ => None,
        },
    ) {
        for p in keys {
            if let Ok(p) = u16::try_from(p) {
                index.by_port.push((u32::from(p), rid));
            }
        }
        return;
    }
    if let Some(keys) = required_exact(
        compiled,
        rule,
        |a| matches!(a, Attr::Method),
        |m| match m {
            Matcher::Str(Pattern::Exact(e)) => Some(*e),
            _ => None,
        },
    ) {
        for m in keys {
            index.by_method.push((m, rid));
        }
        return;
    }
    index.scan.push(rid);
}

/// What a rule requires of the peer identity, as index keys.
enum IdKey {
    /// The exact principal, without `spiffe://`.
    Principal(StrId),
    /// A namespace: the principal contains the segment `/ns/<namespace>/`.
    Namespace(StrId),
}

impl IdKey {
    const PRINCIPAL: u32 = 0;
    const NAMESPACE: u32 = 1;

    /// `(kind, string)`: sorts as the enum's variants, then its string.
    fn pair(&self) -> (u32, u32) {
        match self {
            IdKey::Principal(p) => (IdKey::PRINCIPAL, *p),
            IdKey::Namespace(n) => (IdKey::NAMESPACE, *n),
        }
    }
}

/// If every entry of some clause requires the peer identity to be an exact principal or to
/// contain a `/ns/<namespace>/` segment, those keys: the rule can only match a peer whose
/// principal or one of whose namespace segments is among them. Every matcher that qualifies
/// implies such a segment: an exact namespace (ztunnel parses it from `/ns/<ns>/sa/`; the
/// waypoint's regex is `.*/ns/<ns>/.*`), a service account `<ns>/<sa>`, and a principal prefix
/// that spells out `<td>/ns/<ns>/`.
fn required_identity(
    compiled: &Compiled,
    prefix_namespaces: &FnvMap<StrId, StrId>,
    rule: &CompiledRule,
) -> Option<Vec<(u32, u32)>> {
    compiled.clauses(rule).iter().find_map(|clause| {
        // A sorted Vec of `IdKey::pair`s rather than a BTreeSet: the tree's code was 8 kB
        // of module.
        let mut keys: Vec<(u32, u32)> = Vec::new();
        for entry in compiled.entries(*clause) {
            let found = entry_identity(compiled, prefix_namespaces, entry)?;
            keys.extend(found.iter().map(IdKey::pair));
        }
        sort_pairs(&mut keys);
        keys.dedup();
        (!keys.is_empty()).then_some(keys)
    })
}

fn entry_identity(
    compiled: &Compiled,
    prefix_namespaces: &FnvMap<StrId, StrId>,
    entry: &CEntry,
) -> Option<Vec<IdKey>> {
    let all_keys = |attr: &Attr, values: &[Matcher]| -> Option<Vec<IdKey>> {
        values
            .iter()
            .map(|m| match m {
                Matcher::Str(Pattern::Exact(e)) => Some(match attr {
                    Attr::Namespace => IdKey::Namespace(*e),
                    _ => IdKey::Principal(*e),
                }),
                Matcher::Str(Pattern::Prefix(p)) if *attr == Attr::Principal => {
                    prefix_namespaces.get(p).map(|n| IdKey::Namespace(*n))
                }
                Matcher::NamespaceSegment(n) => Some(IdKey::Namespace(*n)),
                // A namespace without a wildcard is a `NamespaceSegment`: a glob pins down
                // no namespace.
                Matcher::NamespaceGlob(_) => None,
                Matcher::ServiceAccount(ns, _) | Matcher::ServiceAccountRegex(ns, _) => {
                    Some(IdKey::Namespace(*ns))
                }
                _ => None,
            })
            .collect()
    };
    // Principal first: the most selective; then namespace, then service account.
    for wanted in [Attr::Principal, Attr::Namespace, Attr::ServiceAccount] {
        for test in compiled.tests(entry) {
            let Some(field) = compiled.field(test) else {
                continue;
            };
            let (values, _) = test.values_and_not(compiled);
            if field.attr != wanted || values.is_empty() {
                continue;
            }
            if let Some(keys) = all_keys(&field.attr, values) {
                return Some(keys);
            }
        }
    }
    None
}

/// If some clause of `rule` requires, in every one of its entries, a test of an attribute
/// `which` selects whose positive values are all exact keys, returns the union of those
/// keys: the rule can only match a request whose attribute equals one of them.
fn required_exact(
    compiled: &Compiled,
    rule: &CompiledRule,
    which: impl Fn(&Attr) -> bool,
    key_of: impl Fn(&Matcher) -> Option<u32>,
) -> Option<Vec<u32>> {
    'clauses: for clause in compiled.clauses(rule) {
        let entries = compiled.entries(*clause);
        if entries.is_empty() {
            continue;
        }
        // Sorted and deduplicated at the end, as a BTreeSet would keep them (see
        // `required_identity`).
        let mut keys: Vec<u32> = Vec::new();
        for entry in entries {
            let Some(values) = compiled.tests(entry).iter().find_map(|t| {
                let (values, _) = t.values_and_not(compiled);
                (compiled.field(t).is_some_and(|f| which(&f.attr)) && !values.is_empty())
                    .then_some(values)
            }) else {
                continue 'clauses;
            };
            for m in values {
                match key_of(m) {
                    Some(k) => keys.push(k),
                    None => continue 'clauses,
                }
            }
        }
        sort_ids(&mut keys);
        keys.dedup();
        return Some(keys);
    }
    None
}

/// Compiles one policy's rules for `point`, converting what the point cannot evaluate:
/// an ALLOW rule using such an attribute never matches; a DENY, AUDIT or CUSTOM rule is
/// enforced without it (an entry or condition left empty matches everything).
fn compile_policy(
    config: &PluginConfig,
    policy: &AuthorizationPolicy,
    pid: PolicyId,
    point: Point,
    bundle: &[String],
    notes: &mut Vec<PendingNote>,
    b: &mut Builder,
) {
    let Some(rules) = &policy.rules else {
        return;
    };
    let mode = config.mode;
    let first_rule = b.compiled.rules.len();
    let mut dropped: Vec<String> = Vec::new();
    let mut stripped: Vec<String> = Vec::new();
    let mut widened_to_all: Vec<String> = Vec::new();
    for (ri, rule) in rules.iter().enumerate() {
        let unsupported: Vec<&Field> = rule
            .from
            .iter()
            .flatten()
            .chain(rule.to.iter().flatten())
            .flat_map(|e| e.fields.iter().map(|f| (f, Written::Field)))
            .chain(rule.when.iter().map(|f| (f, Written::Condition)))
            .filter(|(f, written)| !f.attr.visible_at(point, *written))
            .map(|(f, _)| f)
            .collect();
        if !unsupported.is_empty() && policy.action == Action::Allow {
            dropped.push(format!("{} ({})", rule.path, names(&unsupported)));
            continue;
        }
        if !unsupported.is_empty() {
            stripped.push(format!("{} ({})", rule.path, names(&unsupported)));
        }
        let first_clause = b.compiled.clauses.len();
        for entries in [&rule.to, &rule.from].into_iter().flatten() {
            let mark = b.mark();
            for e in entries {
                compile_entry(b, &e.path, &e.fields, Written::Field, point, mode, bundle);
            }
            push_clause(b, mark);
        }
        for cond in &rule.when {
            let mark = b.mark();
            let fields = std::slice::from_ref(cond);
            compile_entry(
                b,
                &cond.path,
                fields,
                Written::Condition,
                point,
                mode,
                bundle,
            );
            push_clause(b, mark);
        }
        let clauses = Span::since(first_clause, &b.compiled.clauses);
        if !unsupported.is_empty() && clauses.len == 0 {
            widened_to_all.push(rule.path.clone());
        }
        b.compiled.rules.push(CompiledRule {
            policy: pid,
            index: ri as u32,
            clauses,
        });
    }
    // Envoy's order of `-rule[<index>]` names: by the index's decimal string, so rule 10
    // comes before rule 2 (see `build`).
    if let Some(out) = b.compiled.rules.get_mut(first_rule..) {
        out.sort_by_cached_key(|r| r.index.to_string());
    }
    conversion_notes(policy, point, &dropped, &stripped, &widened_to_all, notes);
    if policy.action == Action::Custom {
        let note = LoadNote {
            policy: policy.key(),
            kind: NoteKind::Info,
            message: format!(
                "CUSTOM provider {:?}: no external authorizer is configured, so traffic its rules match is denied",
                policy.provider.as_deref().unwrap_or("")
            ),
        };
        notes.push(PendingNote { note, once: true });
    }
}

/// The notes telling what `point` could not see in `policy`'s rules and what became of
/// those rules: `dropped` ALLOW rules, `stripped` other rules, of which `widened_to_all`
/// now match everything.
fn conversion_notes(
    policy: &AuthorizationPolicy,
    point: Point,
    dropped: &[String],
    stripped: &[String],
    widened_to_all: &[String],
    notes: &mut Vec<PendingNote>,
) {
    let at = point.name();
    let remedy = match point {
        Point::Ztunnel => {
            " Attach the policy to a waypoint with targetRefs to enforce it as written."
        }
        _ => "",
    };
    if !dropped.is_empty() {
        notes.push(PendingNote {
            once: false,
            note: LoadNote {
            policy: policy.key(),
            kind: NoteKind::Converted,
            message: format!(
                "{} ALLOW rule(s) use attributes {at} cannot see and never match (fail closed): {}.{remedy}",
                if policy.dry_run { "dry-run" } else { "enforced" },
                dropped.join("; ")
            ),
        },
        });
    }
    if !stripped.is_empty() {
        let effect = if widened_to_all.is_empty() {
            "they apply on their remaining conditions alone".to_string()
        } else {
            format!(
                "{} now match(es) all traffic in scope",
                widened_to_all.join(", ")
            )
        };
        notes.push(PendingNote {
            once: false,
            note: LoadNote {
            policy: policy.key(),
            kind: NoteKind::Converted,
            message: format!(
                "{} rule(s) are enforced without the attributes {at} cannot see (fail safe): {}; {effect}.{remedy}",
                policy.action.as_str(),
                stripped.join("; ")
            ),
        },
        });
    }
}

/// Ends a clause whose entries were compiled since `mark`. A clause with an always-true
/// entry is always true: it is dropped, so that indexes and explanations see only real
/// conditions.
fn push_clause(b: &mut Builder, mark: [usize; 2]) {
    let [first_entry, ..] = mark;
    let entries = Span::since(first_entry, &b.compiled.entries);
    if entries
        .of(&b.compiled.entries)
        .iter()
        .any(|e| e.tests.len == 0)
    {
        b.truncate(mark);
    } else {
        b.compiled.clauses.push(entries);
    }
}

fn names(fields: &[&Field]) -> String {
    let mut names: Vec<&str> = fields.iter().map(|f| f.api_name.as_str()).collect();
    names.dedup();
    names.join(", ")
}

fn compile_entry(
    b: &mut Builder,
    path: &str,
    fields: &[Field],
    written: Written,
    point: Point,
    mode: Mode,
    bundle: &[String],
) {
    let path = b.strings.intern(path);
    let first_test = b.compiled.tests.len();
    for f in fields.iter().filter(|f| f.attr.visible_at(point, written)) {
        compile_field(b, f, written, mode, bundle);
    }
    let tests = Span::since(first_test, &b.compiled.tests);
    b.compiled.entries.push(CEntry { path, tests });
}

fn compile_field(b: &mut Builder, field: &Field, written: Written, mode: Mode, bundle: &[String]) {
    let compile = |b: &mut Builder, values: &[String]| {
        for v in values {
            field.attr.compile(v, mode, bundle, b);
        }
    };
    let field_id = b.field_id(field, written);
    let first_matcher = b.compiled.matchers.len();
    compile(b, &field.values);
    let values = b.compiled.matchers.len() - first_matcher;
    compile(b, &field.not_values);
    let first_written = b.compiled.written.len();
    for v in field.values.iter().chain(&field.not_values) {
        let id = b.strings.intern(v);
        b.compiled.written.push(id);
    }
    let values = b.value_list(
        first_matcher,
        values as u32,
        first_written,
        field.values.len() as u32,
    );
    b.compiled.tests.push(Test {
        field: field_id,
        values,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_reported_in_envoys_name_order() {
        // Envoy reports the first matching `ns[..]-policy[..]-rule[<i>]` in string order
        // (envoyproxy/envoy source/extensions/filters/common/rbac/engine_impl.h): with rules 2
        // to 10 matching, `rule[10]` sorts first.
        let mut rules: Vec<serde_json::Value> = vec![
            serde_json::json!({"when": [{"key": "request.headers[x-none]", "values": ["never"]}]});
            2
        ];
        rules.extend(std::iter::repeat_n(serde_json::json!({}), 9));
        let config = serde_json::json!({
            "mode": "waypoint",
            "waypoint": {"name": "waypoint", "namespace": "default"},
            "policies": [{
                "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": "deny", "namespace": "default"},
                "spec": {"action": "DENY", "rules": rules,
                         "targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}]}
            }]
        });
        let Ok(engine) = Engine::from_json(config.to_string().as_bytes()) else {
            panic!("configuration rejected");
        };
        let attrs = crate::OwnedAttributes {
            http: Some(crate::OwnedHttp::new(b"GET", b"/", b"h", vec![], None)),
            ..Default::default()
        };
        let decision = engine.decide(crate::Traffic::Request, &attrs);
        assert_eq!(decision.reason.rule().map(|r| r.rule), Some(10));
    }
}

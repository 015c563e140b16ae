//! What the connection carries: `ipBlocks` (`source.ip`), `remoteIpBlocks` (`remote.ip`),
//! `destination.ip`, `ports` (`destination.port`) and `connection.sni`. ztunnel sees the
//! source and destination addresses and the port; the forwarded client address and SNI
//! only a waypoint sees (see [`super::Attr::visible_at`]).

use crate::compile::{Builder, Compiled, Matcher};
use crate::intern::Strings;
use crate::matcher::Cidr;
use crate::policy::check_port;
use std::net::IpAddr;

/// `ipBlocks`, `remoteIpBlocks` (and their `not` forms), `source.ip`, `remote.ip`,
/// `destination.ip`: an address or a CIDR.
pub(super) fn compile_ip(v: &str, b: &mut Builder) {
    if let Some(cidr) = Cidr::parse(v) {
        let id = b.cidr(cidr);
        b.push(Matcher::Cidr(id));
    }
}

/// `ipBlocks`, `remoteIpBlocks` (and their `not` forms), `source.ip`, `remote.ip`,
/// `destination.ip`: the canonical address is in one of the CIDRs.
pub(super) fn ip_hits(m: &Matcher, ip: IpAddr, compiled: &Compiled) -> bool {
    match m {
        Matcher::Cidr(c) => compiled
            .cidrs
            .get(*c as usize)
            .is_some_and(|c| c.contains(ip)),
        _ => false,
    }
}

/// `ports` / `notPorts` / `destination.port`.
pub(super) fn compile_port(v: &str, b: &mut Builder) {
    if let Ok(p) = check_port(v, "") {
        b.push(Matcher::Port(p));
    }
}

/// `ports` / `notPorts` / `destination.port`: the destination port, exactly.
pub(super) fn port_hits(m: &Matcher, port: u16) -> bool {
    match m {
        Matcher::Port(p) => *p == port,
        _ => false,
    }
}

/// `connection.sni`.
pub(super) fn compile_sni(v: &str, b: &mut Builder) {
    let p = b.pattern(v, false);
    b.push(Matcher::Str(p));
}

/// `connection.sni`: grammar (a) on the TLS server name.
pub(super) fn sni_hits(m: &Matcher, sni: &[u8], strings: &Strings) -> bool {
    match m {
        Matcher::Str(s) => s.matches(strings, sni),
        _ => false,
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, an IPv4 client on a dual-stack socket) is
/// that IPv4 address, as ztunnel canonicalises every address before any policy (istio/ztunnel
/// `src/socket.rs` `to_canonical`): an IPv4 `ipBlocks` DENY is not escaped by the mapped
/// spelling, and the destination chooses the same workload or service.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

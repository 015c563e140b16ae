//! Free ports for the listeners of test and benchmark Envoys.
//!
//! The kernel hands out a port for `bind(:0)` and may hand the same one out again as soon as
//! the probing socket closes. A chain or a benchmark run asks for dozens of ports before any
//! Envoy binds them, so without bookkeeping two listeners of one process can get the same
//! port (seen both in the waypoint chain and in the benchmark). Every port handed out here
//! is remembered for the life of the process and never handed out twice. Clashes with other
//! processes remain possible; [`crate::Envoy::start`] retries those with new ports.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Mutex, PoisonError};

use anyhow::{bail, Context, Result};

/// Ports this process has handed out.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port free on every one of `addrs` at the time of the call and never handed out before
/// by this process.
pub fn free_port(addrs: &[IpAddr]) -> Result<u16> {
    let Some((first, rest)) = addrs.split_first() else {
        bail!("a free port needs at least one address");
    };
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..128 {
        let probe =
            TcpListener::bind((*first, 0)).with_context(|| format!("no free port on {first}"))?;
        let port = probe.local_addr()?.port();
        if handed_out.contains(&port) {
            continue;
        }
        // Held together so that the check on each address sees the others still bound.
        let others: Option<Vec<TcpListener>> = rest
            .iter()
            .map(|a| TcpListener::bind((*a, port)).ok())
            .collect();
        if others.is_some() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    bail!("no port free on all of {addrs:?} that this process has not handed out already")
}

/// A free port on 127.0.0.1, as an address.
pub fn free_loopback() -> Result<SocketAddr> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    Ok(SocketAddr::new(ip, free_port(&[ip])?))
}

/// Whether a start failed because a port chosen for a listener was taken in between (by
/// another process): worth trying again with new ports.
pub fn lost_port_race(e: &anyhow::Error) -> bool {
    let msg = format!("{e:#}").to_ascii_lowercase();
    msg.contains("address already in use") || msg.contains("duplicate address")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_port_is_handed_out_twice() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let ports: Vec<u16> = (0..200).map(|_| free_port(&[ip]).unwrap()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }

    #[test]
    fn a_port_is_free_on_every_address() {
        let addrs: Vec<IpAddr> = (20..25)
            .map(|d| IpAddr::V4(Ipv4Addr::new(127, 0, 0, d)))
            .collect();
        let port = free_port(&addrs).unwrap();
        for a in &addrs {
            TcpListener::bind((*a, port)).unwrap();
        }
    }

    #[test]
    fn no_address_is_an_error() {
        assert!(free_port(&[]).is_err());
    }
}

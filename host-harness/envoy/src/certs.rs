//! Test identities made at test time (never committed): a CA per trust domain, one client
//! certificate per SPIFFE principal (URI SAN `spiffe://TD/ns/NS/sa/SA`, as Istio issues them)
//! and server certificates for Envoy's listeners, all written as PEM files into a directory.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let pki = authz_envoy::certs::TestPki::new(dir.path(), "cluster.local")?;
//! let curl = pki.workload("cluster.local/ns/default/sa/curl")?;
//! println!("{} {}", curl.cert_file.display(), curl.key_file.display());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// One certificate and its key, as PEM text, DER and files.
#[derive(Clone)]
pub struct Identity {
    /// What the certificate names: for a workload the principal as Istio writes it
    /// (`cluster.local/ns/default/sa/curl`), for a server its name.
    pub name: String,
    /// The URI SAN (`spiffe://cluster.local/ns/default/sa/curl`), if any.
    pub spiffe_uri: Option<String>,
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("spiffe_uri", &self.spiffe_uri)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The certificate chain for a TLS client or server (leaf only; the CA is the trust anchor).
    pub fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert_der.clone()]
    }

    /// The private key (PKCS#8).
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// Splits `[spiffe://]TD/ns/NS/sa/SA` into the URI and the principal as Istio writes it.
pub fn spiffe_parts(principal: &str) -> Result<(String, String)> {
    let bare = principal.strip_prefix("spiffe://").unwrap_or(principal);
    let segments: Vec<&str> = bare.split('/').collect();
    match segments.as_slice() {
        [td, "ns", ns, "sa", sa] if !td.is_empty() && !ns.is_empty() && !sa.is_empty() => {
            Ok((format!("spiffe://{bare}"), bare.to_string()))
        }
        _ => bail!("not a SPIFFE principal of the form TD/ns/NS/sa/SA: {principal:?}"),
    }
}

/// A certificate authority for one trust domain and the certificates it issued, in `dir`.
pub struct TestPki {
    dir: PathBuf,
    trust_domain: String,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    ca_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    issued: Mutex<HashMap<String, Arc<Identity>>>,
}

impl fmt::Debug for TestPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir)
            .field("trust_domain", &self.trust_domain)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The parameters of a test leaf certificate with `sans`: usable for both ends of an mTLS
/// connection, since a ztunnel or waypoint presents its certificate as a server and as a client.
fn leaf_params(sans: Vec<SanType>) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = sans;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(params)
}

impl TestPki {
    /// Creates a root CA for `trust_domain` and writes it to `dir/<trust_domain>-ca.pem`.
    pub fn new(dir: &Path, trust_domain: &str) -> Result<TestPki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::OrganizationName, trust_domain);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{trust_domain} test root CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let ca_pem = cert.pem();
        let ca_file = dir.join(format!("{}-ca.pem", slug(trust_domain)));
        std::fs::write(&ca_file, &ca_pem)
            .with_context(|| format!("writing {}", ca_file.display()))?;
        Ok(TestPki {
            dir: dir.to_path_buf(),
            trust_domain: trust_domain.to_string(),
            ca_pem,
            ca_der: cert.der().clone(),
            ca_file,
            issuer: Issuer::new(params, key),
            issued: Mutex::new(HashMap::new()),
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate file (PEM), for Envoy's `trusted_ca`.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The certificate of a workload: `principal` is `TD/ns/NS/sa/SA` with or without
    /// `spiffe://`. Its only SAN is that URI (as Istio's workload certificates). The trust domain
    /// may differ from the CA's (to test foreign identities signed by a trusted root).
    /// Issued once per principal; later calls return the same files.
    pub fn workload(&self, principal: &str) -> Result<Arc<Identity>> {
        let (uri, bare) = spiffe_parts(principal)?;
        self.uri_identity(&uri, &bare)
    }

    /// A client certificate whose only SAN is the URI `uri` (any SPIFFE id, also one that is
    /// not of the `ns/NS/sa/SA` form), named `name`. Issued once per URI.
    pub fn uri_identity(&self, uri: &str, name: &str) -> Result<Arc<Identity>> {
        let key = format!("uri:{uri}");
        if let Some(id) = self.cached(&key)? {
            return Ok(id);
        }
        let mut params = leaf_params(vec![SanType::URI(uri.try_into()?)])?;
        params
            .distinguished_name
            .push(DnType::OrganizationName, self.trust_domain.as_str());
        let stem = format!("wl-{}", slug(uri.strip_prefix("spiffe://").unwrap_or(uri)));
        self.issue(&key, name, Some(uri.to_string()), params, &stem)
    }

    /// A server certificate for `name` with the given DNS names and IP addresses as SANs and,
    /// optionally, a SPIFFE URI SAN (a ztunnel or waypoint presents its own SPIFFE identity).
    pub fn server(
        &self,
        name: &str,
        dns_names: &[&str],
        ips: &[IpAddr],
        spiffe: Option<&str>,
    ) -> Result<Arc<Identity>> {
        let key = format!("server:{name}");
        if let Some(id) = self.cached(&key)? {
            return Ok(id);
        }
        let mut sans = Vec::new();
        let mut uri_out = None;
        if let Some(p) = spiffe {
            let (uri, _) = spiffe_parts(p)?;
            sans.push(SanType::URI(uri.as_str().try_into()?));
            uri_out = Some(uri);
        }
        for d in dns_names {
            sans.push(SanType::DnsName((*d).try_into()?));
        }
        for ip in ips {
            sans.push(SanType::IpAddress(*ip));
        }
        let mut params = leaf_params(sans)?;
        params.distinguished_name.push(DnType::CommonName, name);
        self.issue(&key, name, uri_out, params, &format!("srv-{}", slug(name)))
    }

    fn cached(&self, key: &str) -> Result<Option<Arc<Identity>>> {
        let issued = self
            .issued
            .lock()
            .map_err(|_| anyhow!("certificate cache poisoned"))?;
        Ok(issued.get(key).cloned())
    }

    fn issue(
        &self,
        key: &str,
        name: &str,
        spiffe_uri: Option<String>,
        params: CertificateParams,
        file_stem: &str,
    ) -> Result<Arc<Identity>> {
        let key_pair = KeyPair::generate()?;
        let cert = params.signed_by(&key_pair, &self.issuer)?;
        let cert_pem = cert.pem();
        let key_pem = key_pair.serialize_pem();
        let cert_file = self.dir.join(format!("{file_stem}.pem"));
        let key_file = self.dir.join(format!("{file_stem}-key.pem"));
        std::fs::write(&cert_file, &cert_pem)
            .with_context(|| format!("writing {}", cert_file.display()))?;
        std::fs::write(&key_file, &key_pem)
            .with_context(|| format!("writing {}", key_file.display()))?;
        let id = Arc::new(Identity {
            name: name.to_string(),
            spiffe_uri,
            cert_pem,
            key_pem,
            cert_file,
            key_file,
            cert_der: cert.der().clone(),
            key_der: key_pair.serialize_der(),
        });
        let mut issued = self
            .issued
            .lock()
            .map_err(|_| anyhow!("certificate cache poisoned"))?;
        Ok(issued.entry(key.to_string()).or_insert(id).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_parts_accepts_both_forms() {
        let (uri, bare) = spiffe_parts("cluster.local/ns/default/sa/curl").unwrap();
        assert_eq!(uri, "spiffe://cluster.local/ns/default/sa/curl");
        assert_eq!(bare, "cluster.local/ns/default/sa/curl");
        let (uri2, _) = spiffe_parts("spiffe://cluster.local/ns/default/sa/curl").unwrap();
        assert_eq!(uri, uri2);
        assert!(spiffe_parts("cluster.local/ns/default").is_err());
        assert!(spiffe_parts("/ns/a/sa/b").is_err());
    }

    #[test]
    fn issues_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(dir.path(), "cluster.local").unwrap();
        let a = pki.workload("cluster.local/ns/default/sa/curl").unwrap();
        let b = pki
            .workload("spiffe://cluster.local/ns/default/sa/curl")
            .unwrap();
        assert_eq!(a.cert_file, b.cert_file, "issued once per principal");
        assert!(std::fs::read_to_string(&a.cert_file)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(std::fs::read_to_string(&a.key_file)
            .unwrap()
            .contains("PRIVATE KEY"));
        assert!(pki.ca_file().exists());
        let s = pki
            .server(
                "ztunnel",
                &["localhost"],
                &["127.0.0.1".parse().unwrap()],
                None,
            )
            .unwrap();
        assert!(s.cert_file.exists());
        assert_eq!(
            a.spiffe_uri.as_deref(),
            Some("spiffe://cluster.local/ns/default/sa/curl")
        );
    }
}

//! A registry on loopback for the tests and the walkthrough: Debian's `docker-registry`
//! (distribution 2.8) with a private configuration (127.0.0.1 only, filesystem storage in a
//! given directory, no auth), `skopeo` to push an OCI layout to it with its digests preserved,
//! and a small plain-HTTP client of the Distribution API v2 ([`RegistrySource`], an
//! [`ImageSource`] for the checker) that refuses anything but loopback addresses.

use super::check::{ImageSource, RawManifest};
use super::{digest, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use anyhow::{anyhow, bail, Context, Result};
use authz_envoy::client::{parse_complete_response, HttpResult};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `GET http://addr{path}` with `Connection: close`. Loopback addresses only.
pub fn http_get(addr: SocketAddr, path: &str, accept: &[&str]) -> Result<HttpResult> {
    let accept = accept.join(", ");
    let headers: Vec<(&str, &str)> = if accept.is_empty() {
        Vec::new()
    } else {
        vec![("Accept", accept.as_str())]
    };
    http_request(addr, "GET", path, &headers, &[])
}

/// One HTTP/1.1 request with `Connection: close`. Loopback addresses only.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResult> {
    if !addr.ip().is_loopback() {
        bail!("{addr}: this client only talks to loopback registries");
    }
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: authz-harness\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "PUT" || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    parse_complete_response(&raw, method == "HEAD")
        .map_err(|e| anyhow!(e))
        .with_context(|| format!("{method} http://{addr}{path}"))
}

/// The manifest media types a puller asks for (what go-containerregistry sends).
pub const MANIFEST_ACCEPT: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// A repository of a loopback registry, as an [`ImageSource`]. Manifests are checked against
/// the `Docker-Content-Digest` header, blobs against their digest.
pub struct RegistrySource {
    pub addr: SocketAddr,
    pub repo: String,
}

impl RegistrySource {
    pub fn new(addr: SocketAddr, repo: &str) -> RegistrySource {
        RegistrySource {
            addr,
            repo: repo.to_string(),
        }
    }

    /// The manifest for a tag or digest and its `Docker-Content-Digest`.
    pub fn get_manifest(&self, reference: &str) -> Result<(RawManifest, Option<String>)> {
        let r = http_get(
            self.addr,
            &format!("/v2/{}/manifests/{reference}", self.repo),
            MANIFEST_ACCEPT,
        )?;
        if r.status != 200 {
            bail!(
                "manifest {reference}: HTTP {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        let served = r.header("docker-content-digest").map(str::to_string);
        if let Some(d) = &served {
            if *d != digest(&r.body) {
                bail!(
                    "manifest {reference}: Docker-Content-Digest {d} but the body's digest is {}",
                    digest(&r.body)
                );
            }
        }
        let media_type = r
            .header("content-type")
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
        Ok((
            RawManifest {
                bytes: r.body,
                media_type,
            },
            served,
        ))
    }
}

impl ImageSource for RegistrySource {
    fn name(&self) -> String {
        format!("{}/{}", self.addr, self.repo)
    }

    fn manifest(&mut self, reference: &str) -> Result<RawManifest> {
        Ok(self.get_manifest(reference)?.0)
    }

    fn blob(&mut self, digest_: &str) -> Result<Vec<u8>> {
        let mut path = format!("/v2/{}/blobs/{digest_}", self.repo);
        for _ in 0..3 {
            let r = http_get(self.addr, &path, &[])?;
            match r.status {
                200 => {
                    if digest(&r.body) != digest_ {
                        bail!("blob {digest_}: content does not match its digest");
                    }
                    return Ok(r.body);
                }
                301 | 302 | 303 | 307 | 308 => {
                    let loc = r
                        .header("location")
                        .ok_or_else(|| anyhow!("redirect without Location"))?;
                    path = match loc.strip_prefix(&format!("http://{}", self.addr)) {
                        Some(p) => p.to_string(),
                        None if loc.starts_with('/') => loc.to_string(),
                        None => {
                            bail!("blob {digest_}: redirected off the loopback registry to {loc}")
                        }
                    };
                }
                s => bail!("blob {digest_}: HTTP {s}"),
            }
        }
        bail!("blob {digest_}: too many redirects")
    }
}

/// Pushes `layout:tag` to the loopback registry at `addr` as `repo:tag`, byte for byte (blobs
/// by monolithic upload, then the manifest with its own media type; an index's children
/// first). Independent of skopeo; the only way to push a Docker-typed manifest kept in an OCI
/// layout, which skopeo's `oci:` transport does not read. Returns the registry's
/// `Docker-Content-Digest`.
pub fn push_http(
    addr: SocketAddr,
    repo: &str,
    layout: &mut super::check::LayoutSource,
    tag: &str,
) -> Result<String> {
    let m = layout.manifest(tag)?;
    push_manifest_tree(addr, repo, layout, &m, tag)
}

fn push_manifest_tree(
    addr: SocketAddr,
    repo: &str,
    layout: &mut super::check::LayoutSource,
    m: &RawManifest,
    reference: &str,
) -> Result<String> {
    let json: serde_json::Value =
        serde_json::from_slice(&m.bytes).context("manifest is not JSON")?;
    let media_type = m
        .media_type
        .clone()
        .or_else(|| {
            json.get("mediaType")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        })
        .ok_or_else(|| anyhow!("manifest without a media type"))?;
    let digests = |key: &str| -> Vec<String> {
        json.get(key)
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.get("digest")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    for child in digests("manifests") {
        let cm = layout.manifest(&child)?;
        push_manifest_tree(addr, repo, layout, &cm, &child)?;
    }
    let mut blobs = digests("layers");
    if let Some(c) = json
        .get("config")
        .and_then(|c| c.get("digest"))
        .and_then(serde_json::Value::as_str)
    {
        blobs.push(c.to_string());
    }
    for d in blobs {
        if http_request(addr, "HEAD", &format!("/v2/{repo}/blobs/{d}"), &[], &[])?.status == 200 {
            continue;
        }
        let bytes = layout.blob(&d)?;
        let start = http_request(
            addr,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            &[],
        )?;
        if start.status != 202 {
            bail!("starting the upload of {d}: HTTP {}", start.status);
        }
        let loc = start
            .header("location")
            .ok_or_else(|| anyhow!("upload without Location"))?;
        let loc = loc.strip_prefix(&format!("http://{addr}")).unwrap_or(loc);
        let sep = if loc.contains('?') { '&' } else { '?' };
        let put = http_request(
            addr,
            "PUT",
            &format!("{loc}{sep}digest={d}"),
            &[("Content-Type", "application/octet-stream")],
            &bytes,
        )?;
        if put.status != 201 {
            bail!(
                "uploading {d}: HTTP {}: {}",
                put.status,
                String::from_utf8_lossy(&put.body)
            );
        }
    }
    let r = http_request(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Content-Type", &media_type)],
        &m.bytes,
    )?;
    if r.status != 201 {
        bail!(
            "pushing manifest {reference}: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    r.header("docker-content-digest")
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no Docker-Content-Digest"))
}

/// `docker-registry`: `$DOCKER_REGISTRY_BIN`, else `/usr/bin/docker-registry`, else on `PATH`.
pub fn find_docker_registry() -> Option<PathBuf> {
    find_tool("DOCKER_REGISTRY_BIN", "docker-registry")
}

/// `skopeo`: `$SKOPEO_BIN`, else `/usr/bin/skopeo`, else on `PATH`.
pub fn find_skopeo() -> Option<PathBuf> {
    find_tool("SKOPEO_BIN", "skopeo")
}

fn find_tool(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let usr = Path::new("/usr/bin").join(name);
    if usr.is_file() {
        return Some(usr);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A `docker-registry serve` on 127.0.0.1 (free port), storing in `dir/data`, no auth. Killed
/// when dropped (and, through `PR_SET_PDEATHSIG`, when the process that started it dies).
pub struct LocalRegistry {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl LocalRegistry {
    pub fn start(bin: &Path, dir: &Path) -> Result<LocalRegistry> {
        let mut last = anyhow!("not started");
        for _ in 0..3 {
            match Self::try_start(bin, dir) {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn try_start(bin: &Path, dir: &Path) -> Result<LocalRegistry> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let config = dir.join("config.yml");
        // No `auth:` section: anonymous push and pull. No debug server.
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  fields: {{service: registry}}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {addr}\n  secret: authz-harness-loopback-only\n  headers:\n    X-Content-Type-Options: [nosniff]\n",
                data.display()
            ),
        )?;
        let log = dir.join("registry.log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut reg = LocalRegistry { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = reg.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before serving:\n{}",
                    bin.display(),
                    reg.log_text()
                );
            }
            if let Ok(r) = http_get(addr, "/v2/", &[]) {
                if r.status == 200 {
                    return Ok(reg);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer on {addr} within 20 s:\n{}",
                    bin.display(),
                    reg.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn source(&self, repo: &str) -> RegistrySource {
        RegistrySource::new(self.addr, repo)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// Runs `skopeo` with `--insecure-policy` (no /etc/containers/policy.json needed) and the given
/// arguments; returns its stdout, or an error with its stderr.
pub fn skopeo(bin: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .arg("--insecure-policy")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "skopeo {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Pushes `layout:tag` to `registry/repo:tag` over plain HTTP with the digests preserved
/// (`skopeo copy --preserve-digests`; `--all` keeps an index whole) and returns the pushed
/// manifest digest (`sha256:…`, from `--digestfile`).
pub fn push_layout(
    skopeo_bin: &Path,
    layout: &Path,
    tag: &str,
    registry: &str,
    repo: &str,
    all: bool,
    work: &Path,
) -> Result<String> {
    let digest_file = work.join(format!("pushed-{repo}-{tag}.digest").replace('/', "_"));
    let src = format!("oci:{}:{tag}", layout.display());
    let dst = format!("docker://{registry}/{repo}:{tag}");
    let df = digest_file.display().to_string();
    let mut args = vec![
        "copy",
        "--quiet",
        "--preserve-digests",
        "--digestfile",
        &df,
        "--dest-tls-verify=false",
    ];
    if all {
        args.push("--all");
    }
    args.push(&src);
    args.push(&dst);
    skopeo(skopeo_bin, &args)?;
    Ok(std::fs::read_to_string(&digest_file)?.trim().to_string())
}

/// Pulls `docker://registry/repo{:tag|@digest}` into the OCI layout `dest` (tag `dest_tag`)
/// with skopeo: an independent client for the round trip.
pub fn pull_to_layout(
    skopeo_bin: &Path,
    registry: &str,
    repo: &str,
    reference: &str,
    dest: &Path,
    dest_tag: &str,
    all: bool,
) -> Result<()> {
    let src = if reference.starts_with("sha256:") {
        format!("docker://{registry}/{repo}@{reference}")
    } else {
        format!("docker://{registry}/{repo}:{reference}")
    };
    let dst = format!("oci:{}:{dest_tag}", dest.display());
    let mut args = vec![
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
    ];
    if all {
        args.push("--all");
    }
    args.push(&src);
    args.push(&dst);
    skopeo(skopeo_bin, &args).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let r = parse_complete_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nDocker-Content-Digest: x\r\n\r\nabcdef",
            false,
        )
        .unwrap();
        assert_eq!(
            (
                r.status,
                r.body.as_slice(),
                r.header("docker-content-digest")
            ),
            (200, b"abc".as_slice(), Some("x"))
        );
        let r = parse_complete_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n", false).unwrap();
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn refuses_non_loopback() {
        assert!(http_get(([192, 0, 2, 1], 80).into(), "/v2/", &[]).is_err());
    }
}

//! The built page (`dist/playground/`, from `./build.sh`) in headless Chromium, driven through
//! chromedriver's WebDriver HTTP API (https://www.w3.org/TR/webdriver2/), served by a static
//! file server on loopback. Every decision the page shows is compared with the native code the
//! command line and `replay` run: istio-authz's walk for the Bookinfo walkthrough's steps, and
//! the harness's `replay` loop with the native engine for the fixtures. A shared link is opened
//! in a fresh page and must restore the case; the exported fixture must replay to what was
//! shown. Screenshots go to `target/playground-test/`.
//!
//! Needs `chromium` and `chromedriver` (Debian `chromium`, `chromium-driver`:
//! scripts/install-deps.sh), or `CHROMIUM` and `CHROMEDRIVER` naming them. Without them the
//! test is skipped, unless `CI` is set, where it fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use authz_fixture::fixture::Fixture;
use authz_fixture::replay::{replay_fixture, Native};
use istio_authz::cluster::Cluster;
use istio_authz::request::HttpRequest;
use istio_authz::simulate;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        root().join(target)
    };
    let dir = target.join("playground-test");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

fn skip_or_fail(why: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("CI is set and {why}");
    }
    eprintln!("SKIPPED playground browser test: {why}");
}

// --- a static file server -----------------------------------------------------------------------

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        // instantiateStreaming requires this type.
        Some("wasm") => "application/wasm",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// Serves `dir` on 127.0.0.1 (GET only, no directory listings); returns the base URL.
fn serve(dir: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &dir);
            });
        }
    });
    format!("http://{addr}")
}

fn answer(mut stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let relative = path.trim_start_matches('/');
    let relative = if relative.is_empty() {
        "index.html"
    } else {
        relative
    };
    let file = dir.join(relative);
    let (status, body, ctype) = if relative.split('/').any(|s| s == "..") || !file.is_file() {
        ("404 Not Found", b"not found".to_vec(), "text/plain")
    } else {
        ("200 OK", std::fs::read(&file)?, content_type(&file))
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)?;
    stream.flush()
}

// --- a WebDriver client ---------------------------------------------------------------------------

struct Driver {
    child: Child,
    port: u16,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // chromedriver keeps the connection open whatever the request says: read the head, then
    // exactly the body it announces.
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let lower = head.to_ascii_lowercase();
    let body = if lower.contains("transfer-encoding: chunked") {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..n]);
        }
        body
    } else {
        let length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    let body = String::from_utf8_lossy(&body);
    serde_json::from_str(&body).map_err(|e| {
        std::io::Error::other(format!("{method} {path}: not JSON ({e}): {head}\n{body}"))
    })
}

impl Driver {
    fn start(chromedriver: &Path, chromium: &Path, profile: &Path) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let mut driver = Driver {
            child,
            port,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(status) = http(port, "GET", "/status", None) {
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1500,1100",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
        }}});
        let created = http(port, "POST", "/session", Some(&caps)).unwrap();
        driver.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        driver
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        let out = http(self.port, method, &full, body.as_ref()).unwrap();
        // A WebDriver error is {"error": "<code>", "message": ...}.
        if out["value"]["error"].is_string() && out["value"]["message"].is_string() {
            panic!("WebDriver {method} {path}: {}", out["value"]);
        }
        out["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
        self.wait_for("return document.body && document.body.dataset.ready === 'true'");
    }

    fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    fn wait_for(&self, condition: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.script(condition, json!([])) != true {
            if Instant::now() > deadline {
                let status = self.script(
                    "return (document.getElementById('status')||{}).textContent",
                    json!([]),
                );
                panic!("timed out waiting for {condition}; page status: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn element(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_object()
            .and_then(|m| m.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    /// Types into a form field as a user would (clear, then keys).
    fn type_into(&self, id: &str, text: &str) {
        let e = self.element(&format!("#{id}"));
        self.call("POST", &format!("/element/{e}/clear"), Some(json!({})));
        if !text.is_empty() {
            self.call(
                "POST",
                &format!("/element/{e}/value"),
                Some(json!({"text": text})),
            );
        }
    }

    /// Sets a large text (the editor) at once and tells the page, as a paste does.
    fn paste(&self, id: &str, text: &str) {
        self.script(
            "const e = document.getElementById(arguments[0]); e.value = arguments[1]; \
             e.dispatchEvent(new Event('input', {bubbles: true}));",
            json!([id, text]),
        );
    }

    fn select(&self, id: &str, value: &str) {
        self.script(
            "const e = document.getElementById(arguments[0]); e.value = arguments[1]; \
             e.dispatchEvent(new Event('change', {bubbles: true}));",
            json!([id, value]),
        );
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().unwrap());
        let path = out_dir().join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// What the page shows: the overall decision and, per proxy, its decision and policy, as
    /// the text on screen says them.
    fn shown(&self) -> Value {
        self.script(
            "const d = document.getElementById('decision');
             const err = document.getElementById('error');
             return {
               error: err ? err.textContent : null,
               decision: d ? d.textContent.trim().toLowerCase() : null,
               hops: Array.from(document.querySelectorAll('#hops .hop')).map(h => ({
                 proxy: h.querySelector('.hop-proxy').textContent,
                 decision: h.querySelector('.hop-decision').textContent.toLowerCase(),
                 policy: h.querySelector('.hop-policy').textContent,
                 miss: (h.querySelector('.hop-miss') || {}).textContent || null,
               })),
               highlighted: Array.from(document.querySelectorAll('.rule.hit')).map(r =>
                 r.closest('.policy').querySelector('.policy-key').textContent + ' ' + r.title),
             };",
            json!([]),
        )
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

// --- the cases ------------------------------------------------------------------------------------

const CURL: &str = "default/curl-6c7d8b9f5-klmno";
const REVIEWS: &str = "default/reviews-v1-5b8d6f7c4-fghij";
const GATEWAY: &str = "default/bookinfo-gateway-istio-7f9c6d5b8-pqrst";

fn files(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| std::fs::read_to_string(root().join(n)).unwrap())
        .map(|t| t.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n---\n")
        + "\n"
}

struct Step {
    title: &'static str,
    files: Vec<&'static str>,
    from: &'static str,
    method: &'static str,
    /// The walkthrough's outcome, per proxy on the path: (proxy, decision).
    expect: Vec<(&'static str, &'static str)>,
}

fn walkthrough() -> Vec<Step> {
    const BOOKINFO: &str = "policies/bookinfo/cluster/bookinfo.yaml";
    const WAYPOINT: &str = "policies/bookinfo/cluster/waypoint.yaml";
    const L4: &str = "policies/bookinfo/productpage-ztunnel.yaml";
    const L4_WP: &str = "policies/bookinfo/productpage-ztunnel-with-waypoint.yaml";
    const L7: &str = "policies/bookinfo/productpage-waypoint.yaml";
    vec![
        Step {
            title: "l4-curl-refused",
            files: vec![BOOKINFO, L4],
            from: CURL,
            method: "GET",
            expect: vec![("ztunnel", "deny")],
        },
        Step {
            title: "l4-gateway-admitted",
            files: vec![BOOKINFO, L4],
            from: GATEWAY,
            method: "GET",
            expect: vec![("ztunnel", "allow")],
        },
        Step {
            title: "waypoint-delete-refused",
            files: vec![BOOKINFO, WAYPOINT, L4_WP, L7],
            from: CURL,
            method: "DELETE",
            expect: vec![("waypoint", "deny")],
        },
        Step {
            title: "waypoint-reviews-refused",
            files: vec![BOOKINFO, WAYPOINT, L4_WP, L7],
            from: REVIEWS,
            method: "GET",
            expect: vec![("waypoint", "deny")],
        },
        Step {
            title: "ztunnel-refuses-the-waypoint",
            files: vec![BOOKINFO, WAYPOINT, L4, L7],
            from: CURL,
            method: "GET",
            expect: vec![("waypoint", "allow"), ("ztunnel", "deny")],
        },
        Step {
            title: "get-allowed",
            files: vec![BOOKINFO, WAYPOINT, L4, L7, L4_WP],
            from: CURL,
            method: "GET",
            expect: vec![("waypoint", "allow"), ("ztunnel", "allow")],
        },
    ]
}

/// The native walk of the same call, as the page should show it.
fn native_walk(text: &str, from: &str, method: &str) -> Value {
    let mut cluster = Cluster::default();
    cluster.add_text("editor", text).unwrap();
    let http = HttpRequest {
        method: Some(method.into()),
        path: Some("/productpage".into()),
        ..HttpRequest::default()
    };
    let walk = simulate::walk(
        &cluster,
        &simulate::From::pod(from).unwrap(),
        &simulate::To::parse("productpage:9080").unwrap(),
        &http,
    )
    .unwrap();
    walk.json()
}

fn policy_text(policy: &str) -> String {
    if policy.is_empty() {
        "decided by default (no policy matched)".into()
    } else {
        format!("decided by {policy}")
    }
}

/// A fixture with its configuration inline (policy files appended), as the page reads it.
fn inline_fixture(path: &Path) -> Option<(Fixture, String)> {
    let fixture = Fixture::load(path).unwrap();
    if fixture.expect_error.is_some() {
        return None;
    }
    let raw: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let text = serde_norway::to_string(&json!({
        "name": fixture.name, "config": fixture.config, "cases": raw["cases"],
    }))
    .unwrap();
    Some((fixture, text))
}

#[test]
fn the_page_shows_the_engines_decisions() {
    let dist = root().join("dist/playground");
    if !dist.join("index.html").is_file() || !dist.join("authz_playground_bg.wasm").is_file() {
        return skip_or_fail("dist/playground is not built (run ./build.sh)");
    }
    let (Some(chromium), Some(chromedriver)) = (
        find_program(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        ),
        find_program("CHROMEDRIVER", &["chromedriver"]),
    ) else {
        return skip_or_fail(
            "chromium or chromedriver is missing (scripts/install-deps.sh installs them)",
        );
    };
    let base = serve(dist);
    let profile = out_dir().join("chromium-profile");
    let _ = std::fs::remove_dir_all(&profile);
    let driver = Driver::start(&chromedriver, &chromium, &profile);
    driver.go(&format!("{base}/index.html"));

    // The default example is the walkthrough's refused DELETE.
    let shown = driver.shown();
    assert_eq!(shown["decision"], "deny", "default example: {shown}");

    // 1. The walkthrough, step by step, typed into the form.
    driver.select("kind", "cluster");
    driver.select("fromKind", "pod");
    let http = driver.element("#http");
    if driver.script("return document.getElementById('http').checked", json!([])) != true {
        driver.call("POST", &format!("/element/{http}/click"), Some(json!({})));
    }
    for step in walkthrough() {
        let text = files(&step.files);
        driver.paste("text", &text);
        driver.type_into("from", step.from);
        driver.type_into("to", "productpage:9080");
        driver.type_into("method", step.method);
        driver.type_into("path", "/productpage");
        driver.type_into("host", "");
        driver.type_into("headers", "");
        driver.type_into("jwt", "");
        let shown = driver.shown();
        let native = native_walk(&text, step.from, step.method);
        let title = step.title;
        assert!(
            shown["error"].is_null(),
            "{title}: the page shows an error: {shown}"
        );
        assert_eq!(
            shown["decision"], native["decision"],
            "{title}: page {shown}, native {native}"
        );
        let hops = shown["hops"].as_array().unwrap();
        let native_hops = native["hops"].as_array().unwrap();
        assert_eq!(
            hops.len(),
            native_hops.len(),
            "{title}: page {shown}, native {native}"
        );
        assert_eq!(hops.len(), step.expect.len(), "{title}: {shown}");
        for ((page, native), (proxy, decision)) in hops.iter().zip(native_hops).zip(&step.expect) {
            assert_eq!(page["proxy"], native["proxy"], "{title}");
            assert_eq!(page["proxy"], *proxy, "{title}");
            assert_eq!(page["decision"], native["decision"], "{title}: {shown}");
            assert_eq!(page["decision"], *decision, "{title}: {shown}");
            let policy = native["policy"].as_str().unwrap();
            assert!(
                page["policy"]
                    .as_str()
                    .unwrap()
                    .starts_with(&policy_text(policy)),
                "{title}: page says {}, native policy {policy:?}",
                page["policy"]
            );
            // The nearest miss as the engine words it.
            match native.get("nearestMiss") {
                Some(m) => {
                    let miss = page["miss"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{title}: no nearest miss shown: {shown}"));
                    for key in ["policy", "field", "wanted", "got"] {
                        let v = m[key].as_str().unwrap();
                        assert!(
                            miss.contains(v),
                            "{title}: nearest miss {miss:?} lacks {key} {v:?}"
                        );
                    }
                }
                None => assert!(page["miss"].is_null(), "{title}: {shown}"),
            }
            // The deciding rule is highlighted.
            if let Some(rule) = native.get("rule").and_then(Value::as_str) {
                let want = format!("{policy} {rule}");
                assert!(
                    shown["highlighted"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|h| h.as_str().unwrap().ends_with(&want)),
                    "{title}: {want} not highlighted: {shown}"
                );
            }
        }
        driver.screenshot(&format!("walkthrough-{title}.png"));
    }

    // 2. The walkthrough's refused DELETE again: the README's screenshot, then Share and
    // Export.
    let step = walkthrough()
        .into_iter()
        .find(|s| s.method == "DELETE")
        .unwrap();
    let delete_text = files(&step.files);
    driver.paste("text", &delete_text);
    driver.type_into("from", CURL);
    driver.type_into("method", "DELETE");
    driver.type_into("name", "curl DELETE productpage");
    let before = driver.shown();
    assert_eq!(before["decision"], "deny");
    driver.screenshot("walkthrough-delete.png");

    driver.click("#export");
    let exported = driver.script(
        "return document.getElementById('export-out').textContent",
        json!([]),
    );
    let exported = exported
        .as_str()
        .unwrap_or_else(|| panic!("no export shown: {exported}"));
    let file = out_dir().join("exported-delete.yaml");
    std::fs::write(&file, exported).unwrap();
    let fixture = Fixture::load(&file).unwrap();
    let reports = replay_fixture(&fixture, &mut [&mut Native::default()]);
    assert_eq!(reports.len(), 1, "{exported}");
    assert!(
        reports[0].passed(),
        "the exported fixture does not replay: {:?}\n{exported}",
        reports[0].failures
    );
    assert_eq!(fixture.cases[0].expect.as_str(), "deny");

    driver.click("#share");
    let link = driver.script(
        "return document.getElementById('share-link').href",
        json!([]),
    );
    let link = link.as_str().unwrap().to_string();
    assert!(link.contains("#case="), "{link}");
    // A fresh page: the default example first, then the link.
    driver.go(&format!("{base}/index.html"));
    driver.select("example", "1");
    assert_eq!(driver.shown()["decision"], "allow");
    // Leave the page first: the same URL with another fragment would only fire hashchange.
    driver.call("POST", "/url", Some(json!({"url": "about:blank"})));
    driver.call("POST", "/url", Some(json!({"url": link})));
    driver.wait_for("return document.body && document.body.dataset.ready === 'true'");
    let restored = driver.script(
        "return ['text','from','method','path','name'].map(f => document.getElementById(f).value)",
        json!([]),
    );
    assert_eq!(
        restored,
        json!([
            delete_text,
            CURL,
            "DELETE",
            "/productpage",
            "curl DELETE productpage"
        ]),
        "the shared link does not restore the case"
    );
    let after = driver.shown();
    assert_eq!(after, before, "the shared link shows another decision");
    driver.screenshot("shared-link.png");

    // 3. Every fixture replayed in the page gives what `replay` gives with the native engine.
    let mut fixtures: Vec<PathBuf> = Vec::new();
    for dir in [
        "tests/fixtures/seeds",
        "tests/fixtures/waypoint",
        "tests/fixtures/ztunnel",
    ] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        found.sort();
        fixtures.extend(found);
    }
    assert!(fixtures.len() > 20, "{fixtures:?}");
    driver.script(
        "document.getElementById('replay-box').open = true",
        json!([]),
    );
    let mut cases = 0;
    for path in &fixtures {
        let Some((fixture, text)) = inline_fixture(path) else {
            continue;
        };
        let native = replay_fixture(&fixture, &mut [&mut Native::default()]);
        driver.paste("fixture", &text);
        driver.click("#replay");
        let rows = driver.script(
            "const err = document.getElementById('replay-error');
             if (err) return err.textContent;
             return Array.from(document.querySelectorAll('#replay-table tr[data-result]')).map(r => ({
               case: r.querySelector('.case').textContent,
               decision: r.querySelector('.decision').textContent,
               policy: r.querySelector('.policy').textContent,
               result: r.dataset.result,
             }));",
            json!([]),
        );
        let name = path.display();
        let rows = rows
            .as_array()
            .unwrap_or_else(|| panic!("{name}: the page says {rows}"));
        assert_eq!(rows.len(), native.len(), "{name}");
        for (row, report) in rows.iter().zip(&native) {
            let (label, observed) = &report.observed[0];
            assert_eq!(label, "native");
            assert_eq!(row["case"], report.case.as_str(), "{name}");
            assert_eq!(
                row["decision"],
                observed.verdict.as_str(),
                "{name}: {}: the page shows {} but replay decides {}",
                report.case,
                row["decision"],
                observed.verdict
            );
            assert_eq!(
                row["policy"],
                observed.policy.clone().unwrap_or_default().as_str(),
                "{name}: {}",
                report.case
            );
            assert_eq!(row["result"], "passed", "{name}: {}: {row}", report.case);
            assert!(
                report.passed(),
                "{name}: {}: {:?}",
                report.case,
                report.failures
            );
            cases += 1;
        }
    }
    assert!(cases > 100, "only {cases} cases replayed");
    driver.screenshot("replay.png");
    eprintln!(
        "playground: {cases} fixture cases replayed in the page; screenshots in {}",
        out_dir().display()
    );
}

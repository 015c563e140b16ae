//! The plugin configuration parser: any bytes give an engine or an error, never a panic or a
//! hang. A configuration that loads is then asked to decide a plain connection and a plain
//! request, so that compiling and indexing whatever was accepted is exercised too.
#![no_main]

use authz_plugin::engine::{Engine, OwnedAttributes, OwnedHttp, Reason, Traffic, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(engine) = Engine::from_json(data) else {
        return;
    };
    let connection = OwnedAttributes {
        peer_principal: Some("spiffe://cluster.local/ns/default/sa/curl".into()),
        destination_port: Some(8080),
        ..Default::default()
    };
    let request = OwnedAttributes {
        http: Some(OwnedHttp::new(b"GET", b"/", b"h", vec![], None)),
        ..connection.clone()
    };
    for (traffic, attrs) in [
        (Traffic::Connection, &connection),
        (Traffic::Request, &request),
    ] {
        let d = engine.decide(traffic, attrs);
        // A verdict and its reason never disagree.
        let allowing = matches!(d.reason, Reason::Allowed(_) | Reason::NoAllowPolicies);
        assert_eq!(d.verdict == Verdict::Allow, allowing, "{:?}", d.reason);
    }
});

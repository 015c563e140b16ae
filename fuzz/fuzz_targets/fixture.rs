//! The fixture reader (docs/fixtures.md): any text gives a fixture or an error, never a panic or
//! a hang (deeply nested YAML included). References to other files are dropped first: the
//! target reads only its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

use authz_fixture::fixture;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for json in [false, true] {
        let Ok(mut value) = fixture::parse_value(text, json) else {
            continue;
        };
        if let Some(map) = value.as_object_mut() {
            map.remove("configFile");
            map.remove("policyFiles");
        }
        if let Ok(f) = fixture::Fixture::from_value(Path::new("fuzz.yaml"), value) {
            // What `replay` does next: the configuration must parse or be rejected cleanly.
            let _ = authz_plugin::engine::PluginConfig::from_value(&f.config)
                .and_then(authz_plugin::engine::Engine::from_config_all_points);
        }
    }
});

//! The request path as Envoy hands it to the filters in Istio's default configuration.
//!
//! Envoy normalises `:path` in the HTTP connection manager, before any filter runs, and the
//! normalised path is what RBAC (and the module) match and what the backend receives. istiod's
//! waypoint (and sidecar) connection manager, with the mesh's default `pathNormalization`
//! (`DEFAULT`, which is `BASE`), sets `normalize_path: true` and
//! `path_with_escaped_slashes_action: KEEP_UNCHANGED`, and leaves `merge_slashes` off (istio/istio
//! `pilot/pkg/networking/core/listener_builder.go` `buildHTTPConnectionManager`; Istio's
//! "Authorization Policy Normalization" reference page). `normalize_path` follows RFC 3986:
//! percent-encoded unreserved characters are decoded, `\` is read as `/`, and dot segments are
//! removed (envoyproxy/envoy `source/common/http/path_utility.cc` `canonicalPath`). `check`
//! applies the same before explaining, so that it explains the request Envoy delivers.

/// What Istio's default normalization leaves of `path` (the `:path`, query included, which
/// is kept as received), or why Envoy refuses the request before any filter.
pub fn istio_default(path: &[u8]) -> Result<Vec<u8>, String> {
    let (path_part, query) = match path.iter().position(|b| *b == b'?') {
        Some(i) => path.split_at(i),
        None => (path, &[][..]),
    };
    if path_part.contains(&b'#') {
        return Err(
            "Envoy answers 400 to a :path with a fragment (#) before any filter runs".into(),
        );
    }
    if !path_part.starts_with(b"/") {
        // Not an origin-form path (`*`, an absolute URI): nothing to normalise.
        return Ok(path.to_vec());
    }
    let mut decoded = Vec::with_capacity(path_part.len());
    let mut i = 0;
    while let Some(&b) = path_part.get(i) {
        if b == b'%' {
            let hex = path_part.get(i + 1..i + 3).and_then(|h| {
                std::str::from_utf8(h)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            });
            match hex {
                Some(0) => {
                    return Err(
                        "Envoy answers 400 to a :path containing %00 before any filter runs".into(),
                    )
                }
                // RFC 3986 §2.3: escaped unreserved characters are the characters.
                Some(c) if c.is_ascii_alphanumeric() || b"-._~".contains(&c) => {
                    decoded.push(c);
                    i += 3;
                    continue;
                }
                _ => {}
            }
        }
        // A backslash is a path separator for Envoy's normalization.
        decoded.push(if b == b'\\' { b'/' } else { b });
        i += 1;
    }
    let mut out = remove_dot_segments(&decoded);
    out.extend_from_slice(query);
    Ok(out)
}

/// RFC 3986 §5.2.4 `remove_dot_segments` on an absolute path.
fn remove_dot_segments(input: &[u8]) -> Vec<u8> {
    let mut input = input;
    let mut output: Vec<u8> = Vec::with_capacity(input.len());
    let pop_segment = |output: &mut Vec<u8>| {
        let cut = output.iter().rposition(|b| *b == b'/').unwrap_or(0);
        output.truncate(cut);
    };
    while !input.is_empty() {
        if let Some(rest) = input
            .strip_prefix(b"../")
            .or_else(|| input.strip_prefix(b"./"))
        {
            input = rest;
        } else if input.starts_with(b"/./") {
            input = input.get(2..).unwrap_or_default();
        } else if input == b"/." {
            input = b"/";
        } else if input.starts_with(b"/../") {
            input = input.get(3..).unwrap_or_default();
            pop_segment(&mut output);
        } else if input == b"/.." {
            input = b"/";
            pop_segment(&mut output);
        } else if input == b"." || input == b".." {
            input = b"";
        } else {
            // Move the first segment (with its leading `/`) to the output.
            let start = usize::from(input.starts_with(b"/"));
            let end = input
                .iter()
                .skip(start)
                .position(|b| *b == b'/')
                .map_or(input.len(), |p| p + start);
            output.extend_from_slice(input.get(..end).unwrap_or_default());
            input = input.get(end..).unwrap_or_default();
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use super::istio_default;

    fn n(p: &str) -> String {
        match istio_default(p.as_bytes()) {
            Ok(v) => String::from_utf8_lossy(&v).into_owned(),
            Err(e) => format!("refused: {e}"),
        }
    }

    #[test]
    fn as_istios_default_normalization() {
        // Istio's normalization reference page, BASE (the default).
        assert_eq!(n("/a/../admin"), "/admin");
        assert_eq!(n("/a/./b"), "/a/b");
        assert_eq!(n("/a/b/../../c"), "/c");
        assert_eq!(n("/../admin"), "/admin");
        assert_eq!(n("/a\\..\\admin"), "/admin");
        assert_eq!(n("/%61dmin"), "/admin");
        assert_eq!(n("/a/%2e%2E/admin"), "/admin");
        assert_eq!(n("/a/b/.."), "/a/");
        // Not in BASE: slashes are not merged and escaped slashes are kept.
        assert_eq!(n("/a//b"), "/a//b");
        assert_eq!(n("/a%2Fb"), "/a%2Fb");
        assert_eq!(n("/a%2f..%2fadmin"), "/a%2f..%2fadmin");
        // The query is kept as received.
        assert_eq!(n("/a/../b?x=/../y"), "/b?x=/../y");
        assert!(n("/a%00b").starts_with("refused"));
        assert!(n("/a#frag").starts_with("refused"));
    }
}

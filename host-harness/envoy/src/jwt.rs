//! Signed JWTs for Envoy's `jwt_authn` filter: a P-256 key made at test time, its JWKS for
//! `local_jwks`, and ES256 tokens over any JSON payload. With `payload_in_metadata`, Envoy puts
//! the verified payload into dynamic metadata, where the module reads `request.auth.*`.

use anyhow::{anyhow, Result};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

/// The key id in the JWKS and in every token's header.
pub const KID: &str = "authz-test";

/// Base64url without padding (RFC 7515 §2).
pub fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let index = ((n >> (18 - 6 * i)) & 0x3f) as usize;
            out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
        }
    }
    out
}

/// An ES256 signer and its JWKS.
pub struct JwtSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    jwks: String,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("jwks", &self.jwks)
            .finish()
    }
}

impl JwtSigner {
    pub fn new() -> Result<JwtSigner> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow!("generating a P-256 key"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| anyhow!("loading the P-256 key: {e}"))?;
        // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = key.public_key().as_ref();
        let (x, y) = match (point.get(1..33), point.get(33..65)) {
            (Some(x), Some(y)) if point.len() == 65 => (x, y),
            _ => return Err(anyhow!("unexpected public key encoding")),
        };
        let jwks = json!({
            "keys": [{ "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": KID,
                       "x": b64url(x), "y": b64url(y) }],
        })
        .to_string();
        Ok(JwtSigner { key, rng, jwks })
    }

    /// The JWKS (JSON) for Envoy's `local_jwks.inline_string`.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// A compact ES256 token with `payload` as its claims.
    pub fn sign(&self, payload: &Value) -> Result<String> {
        let header = json!({ "alg": "ES256", "typ": "JWT", "kid": KID });
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(payload.to_string().as_bytes())
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| anyhow!("signing"))?;
        Ok(format!("{signing_input}.{}", b64url(sig.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_vectors() {
        // RFC 4648 §10, url alphabet, no padding.
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(b"foob"), "Zm9vYg");
        assert_eq!(b64url(b"fooba"), "Zm9vYmE");
        assert_eq!(b64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn signs_three_parts() {
        let s = JwtSigner::new().unwrap();
        let t = s.sign(&json!({"iss": "a", "sub": "b"})).unwrap();
        assert_eq!(t.split('.').count(), 3);
        assert!(s.jwks().contains("\"kid\":\"authz-test\""));
    }
}

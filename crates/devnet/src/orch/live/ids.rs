//! Live-runner identifiers and derived secrets (ai/runner/live_runner.go:37-39, 1640-1710):
//! lowercase unpadded base32 of random bytes, and secrets derived from a runner's seed with
//! HMAC-SHA256.

use rand::RngCore as _;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Lowercase RFC 4648 base32 without padding.
pub(crate) fn base32_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// `n` random bytes in lowercase base32.
pub(crate) fn random_str(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    base32_lower(&b)
}

/// A generated runner ID: `runner_` + 8 chars.
pub(crate) fn runner_id() -> String {
    format!("runner_{}", random_str(5))
}

/// A generated session ID: `session_` + 8 chars.
pub(crate) fn session_id() -> String {
    format!("session_{}", random_str(5))
}

/// A proxy ID: 26 chars from 16 random bytes.
pub(crate) fn proxy_id() -> String {
    random_str(16)
}

/// A runner's random 32-byte seed.
pub(crate) fn seed() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b
}

/// `base32lower(HMAC-SHA256(seed, label))`: 52 chars.
pub(crate) fn derive_secret(seed: &[u8], label: &str) -> String {
    base32_lower(&crate::keys::hmac(seed, &[label.as_bytes()]))
}

/// Constant-time string comparison (Go `hmac.Equal`).
pub(crate) fn secret_eq(got: &str, want: &str) -> bool {
    crate::keys::ct_eq(got.as_bytes(), want.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 §10, lowercased, unpadded.
        for (input, want) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(base32_lower(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn id_formats() {
        let ok = |s: &str| s.chars().all(|c| matches!(c, 'a'..='z' | '2'..='7'));
        let r = runner_id();
        assert!(
            r.starts_with("runner_") && r.len() == 15 && ok(&r[7..]),
            "{r}"
        );
        let s = session_id();
        assert!(
            s.starts_with("session_") && s.len() == 16 && ok(&s[8..]),
            "{s}"
        );
        let p = proxy_id();
        assert!(p.len() == 26 && ok(&p), "{p}");
        let secret = derive_secret(&[1; 32], "heartbeat");
        assert!(secret.len() == 52 && ok(&secret), "{secret}");
        assert_ne!(secret, derive_secret(&[2; 32], "heartbeat"));
        assert!(secret_eq(&secret, &derive_secret(&[1; 32], "heartbeat")));
        assert!(!secret_eq(&secret, "x"));
    }
}

//! Devnet identities and signatures.
//!
//! Real orchestrators and signers sign with Ethereum keys. Devnet has no chain, so every
//! devnet component shares one random secret and "signs" with HMAC-SHA256 bound to the
//! signer's address. Signatures keep the wire shape of the real ones (65 bytes, last byte
//! 27) so clients treat them as opaque bytes, and any devnet component can verify them.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sha3::{Digest, Keccak256};

type HmacSha256 = Hmac<Sha256>;

/// A 20-byte account address.
pub(crate) type Address = [u8; 20];

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac accepts any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Keccak-256, as Ethereum uses it.
pub(crate) fn keccak(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// Constant-time byte comparison.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The shared secret of one devnet and the identities derived from it.
#[derive(Clone)]
pub(crate) struct Keys {
    secret: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    pub(crate) fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// A secret for `purpose`, distinct per purpose.
    pub(crate) fn derive(&self, purpose: &str) -> [u8; 32] {
        hmac(&self.secret, &[b"lpgw-devnet/", purpose.as_bytes()])
    }

    /// The address of the named role (`orchestrator`, `signer`).
    pub(crate) fn address(&self, role: &str) -> Address {
        let h = keccak(&self.derive(&format!("address/{role}")));
        let mut a = [0u8; 20];
        a.copy_from_slice(&h[12..]);
        a
    }

    /// Signs `msg` as `address`: 65 bytes, like an Ethereum `personal_sign` signature.
    pub(crate) fn sign(&self, address: &Address, msg: &[u8]) -> Vec<u8> {
        let digest = keccak(msg);
        let k = self.derive("sign");
        let mut sig = Vec::with_capacity(65);
        sig.extend_from_slice(&hmac(&k, &[b"r", address, &digest]));
        sig.extend_from_slice(&hmac(&k, &[b"s", address, &digest]));
        sig.push(27);
        sig
    }

    /// Whether `sig` is `address`'s devnet signature of `msg`.
    pub(crate) fn verify(&self, address: &[u8], msg: &[u8], sig: &[u8]) -> bool {
        let Ok(addr) = <Address>::try_from(address) else {
            return false;
        };
        ct_eq(&self.sign(&addr, msg), sig)
    }
}

/// Lowercase hex without prefix.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Parses hex with or without a `0x` prefix.
pub(crate) fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// EIP-55 mixed-case checksummed `0x` address, as go-ethereum's `Address.Hex()` prints it.
pub(crate) fn checksum_address(a: &Address) -> String {
    let lower = hex(a);
    let h = keccak(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (h[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0xf;
        if c.is_ascii_alphabetic() && nibble >= 8 {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eip55_vector() {
        // From EIP-55's test cases.
        let a: Address = parse_hex("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(
            checksum_address(&a),
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        );
    }

    #[test]
    fn keccak_of_empty_matches_ethereum() {
        assert_eq!(
            hex(&keccak(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn signatures_bind_address_and_message() {
        let k = Keys::new([7; 32]);
        let a = k.address("signer");
        let b = k.address("orchestrator");
        assert_ne!(a, b);
        let sig = k.sign(&a, b"hello");
        assert_eq!(sig.len(), 65);
        assert!(k.verify(&a, b"hello", &sig));
        assert!(!k.verify(&b, b"hello", &sig));
        assert!(!k.verify(&a, b"hellO", &sig));
        assert!(!Keys::new([8; 32]).verify(&a, b"hello", &sig));
        assert!(!k.verify(&a[..19], b"hello", &sig));
    }
}

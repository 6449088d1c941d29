//! Orchestrator auth tokens (core/orchestrator.go:511-558).
//!
//! `token = HMAC-SHA256(secret, session_id ‖ big-endian minimal(expiration))`, with a secret
//! that is random per process start. Time is passed in, never read.

use lpgw_proto::AuthToken;

use crate::keys::{ct_eq, hmac};

/// Why an auth token was refused; the texts are go-livepeer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    /// No token in the segment credentials.
    #[error("missing auth token")]
    Missing,
    /// The HMAC does not match.
    #[error("invalid auth token")]
    Invalid,
    /// The expiration has passed.
    #[error("expired auth token")]
    Expired,
}

/// Mints and verifies auth tokens with one secret.
#[derive(Clone)]
pub(crate) struct AuthKey {
    secret: [u8; 32],
}

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthKey(..)")
    }
}

/// Go's `big.NewInt(x).Bytes()`: big-endian without leading zero bytes.
fn be_minimal(x: i64) -> Vec<u8> {
    let b = x.unsigned_abs().to_be_bytes();
    let first = b.iter().position(|&v| v != 0).unwrap_or(b.len());
    b[first..].to_vec()
}

impl AuthKey {
    pub(crate) fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    fn mac(&self, session_id: &str, expiration: i64) -> [u8; 32] {
        hmac(
            &self.secret,
            &[session_id.as_bytes(), &be_minimal(expiration)],
        )
    }

    /// A token for `session_id` that expires at `expiration` (unix seconds).
    pub(crate) fn mint(&self, session_id: String, expiration: i64) -> AuthToken {
        AuthToken {
            token: self.mac(&session_id, expiration).to_vec(),
            session_id,
            expiration,
        }
    }

    /// Checks a token at `now` (unix seconds).
    pub(crate) fn verify(&self, token: Option<&AuthToken>, now: i64) -> Result<(), AuthError> {
        let t = token.ok_or(AuthError::Missing)?;
        if !ct_eq(&self.mac(&t.session_id, t.expiration), &t.token) {
            return Err(AuthError::Invalid);
        }
        if t.expiration < now {
            return Err(AuthError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_big_endian() {
        assert_eq!(be_minimal(0), Vec::<u8>::new());
        assert_eq!(be_minimal(1), vec![1]);
        assert_eq!(be_minimal(0x0102_0304), vec![1, 2, 3, 4]);
    }

    #[test]
    fn mint_verify_tamper_expire() {
        let k = AuthKey::new([1; 32]);
        let t = k.mint("abcd0123".into(), 1_000);
        assert_eq!(t.token.len(), 32);
        assert_eq!(k.verify(Some(&t), 999), Ok(()));
        assert_eq!(k.verify(Some(&t), 1_000), Ok(()));
        assert_eq!(k.verify(Some(&t), 1_001), Err(AuthError::Expired));
        assert_eq!(k.verify(None, 0), Err(AuthError::Missing));
        let mut bad = t.clone();
        bad.expiration += 1;
        assert_eq!(k.verify(Some(&bad), 0), Err(AuthError::Invalid));
        let mut bad = t.clone();
        bad.session_id = "abcd0124".into();
        assert_eq!(k.verify(Some(&bad), 0), Err(AuthError::Invalid));
        assert_eq!(
            AuthKey::new([2; 32]).verify(Some(&t), 0),
            Err(AuthError::Invalid)
        );
    }
}

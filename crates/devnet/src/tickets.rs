//! Devnet probabilistic-micropayment tickets.
//!
//! The fields are go-livepeer's (`TicketParams`, `TicketSenderParams`), but nothing touches a
//! chain: the orchestrator binds `recipient_rand_hash` to its seed and expiry with an HMAC,
//! the signer "signs" each ticket with the devnet signature ([`Keys::sign`]), and every valid
//! ticket credits its expected value (pm/ticket.go: `EV = faceValue × winProb / (2^256 − 1)`).
//! `expiration_block` holds the expiry as unix seconds, big-endian, instead of a block number.

use std::collections::{HashMap, HashSet};

use lpgw_proto::{Payment, TicketExpirationParams, TicketParams, TicketSenderParams};

use crate::keys::{Address, Keys, ct_eq, hmac};

/// Length of a devnet round, in seconds (the `creation_round` is `now / ROUND_SECS`).
const ROUND_SECS: i64 = 3600;

/// Why a payment's tickets were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TicketError {
    /// Tickets without a sender (core/orchestrator.go).
    #[error("could not parse sender")]
    MissingSender,
    /// A priced payment must name its expected price.
    #[error("missing expected price")]
    MissingPrice,
    /// Params not issued to this orchestrator.
    #[error("invalid ticket recipient")]
    Recipient,
    /// Params not minted by this orchestrator, or tampered with.
    #[error("invalid recipientRandHash")]
    RandHash,
    /// The params' expiry has passed (retryable for the go gateway).
    #[error("TicketParams expired")]
    Expired,
    /// A nonce was already used with these params (retryable for the go gateway).
    #[error("invalid ticket senderNonce")]
    Nonce,
    /// The ticket signature does not verify.
    #[error("invalid ticket signature")]
    Signature,
}

/// Big-endian bytes of `v` without leading zeros (an empty vec for 0).
fn be_bytes(v: u128) -> Vec<u8> {
    let b = v.to_be_bytes();
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[first..].to_vec()
}

/// Parses a big-endian unsigned integer of at most 16 significant bytes.
fn be_u128(b: &[u8]) -> Option<u128> {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    let sig = &b[first..];
    if sig.len() > 16 {
        return None;
    }
    Some(sig.iter().fold(0u128, |acc, &x| (acc << 8) | u128::from(x)))
}

/// Left-pads to 32 bytes (Go's `common.LeftPadBytes(x, 32)` for values that fit).
fn pad32(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let b = &b[b.len().saturating_sub(32)..];
    out[32 - b.len()..].copy_from_slice(b);
    out
}

/// Expected value of one ticket in wei, rounded down: `faceValue × winProb / (2^256 − 1)`.
///
/// Uses the top 64 bits of `winProb`, exact to well under one wei for face values below
/// 2^64; larger face values saturate.
pub(crate) fn ticket_ev(params: &TicketParams) -> u128 {
    let Some(fv) = be_u128(&params.face_value) else {
        return u128::MAX;
    };
    let wp = pad32(&params.win_prob);
    let mut top = [0u8; 8];
    top.copy_from_slice(&wp[..8]);
    let top = u128::from(u64::from_be_bytes(top));
    // (top + 1) / 2^64 approximates winProb / (2^256 - 1) from above by < 2^-64.
    match fv.checked_mul(top + 1) {
        Some(p) => p >> 64,
        None => (fv >> 64) * (top + 1),
    }
}

/// The bytes a ticket signature covers (pm/ticket.go `flatten`).
pub(crate) fn ticket_preimage(
    params: &TicketParams,
    sender: &[u8],
    nonce: u32,
    exp: Option<&TicketExpirationParams>,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(256);
    v.extend_from_slice(&params.recipient);
    v.extend_from_slice(sender);
    v.extend_from_slice(&pad32(&params.face_value));
    v.extend_from_slice(&pad32(&params.win_prob));
    v.extend_from_slice(&pad32(&u128::from(nonce).to_be_bytes()));
    v.extend_from_slice(&params.recipient_rand_hash);
    if let Some(e) = exp {
        v.extend_from_slice(&pad32(&e.creation_round.to_be_bytes()));
        v.extend_from_slice(&e.creation_round_block_hash);
    }
    v
}

/// The bytes segment credentials are signed over (core/streamdata.go `Flatten`):
/// `manifestId ‖ leftpad32(seq) ‖ hash ‖ hex(profiles)`.
pub(crate) fn seg_preimage(seg: &lpgw_proto::SegData) -> Vec<u8> {
    let mut v = Vec::with_capacity(128);
    v.extend_from_slice(&seg.manifest_id);
    v.extend_from_slice(&pad32(&seg.seq.to_be_bytes()));
    v.extend_from_slice(&seg.hash);
    v.extend_from_slice(crate::keys::hex(&seg.profiles).as_bytes());
    v
}

/// Builds a payment with `count` tickets on `params` (the signer side).
pub(crate) fn make_payment(
    keys: &Keys,
    sender: &Address,
    params: &TicketParams,
    first_nonce: u32,
    count: u32,
    expected_price: Option<lpgw_proto::PriceInfo>,
) -> Payment {
    let exp = params.expiration_params.clone();
    let mut tp = params.clone();
    tp.expiration_params = None;
    let ticket_sender_params = (0..count)
        .map(|i| {
            let nonce = first_nonce.wrapping_add(i);
            let pre = ticket_preimage(&tp, sender, nonce, exp.as_ref());
            TicketSenderParams {
                sender_nonce: nonce,
                sig: keys.sign(sender, &pre),
            }
        })
        .collect();
    Payment {
        ticket_params: Some(tp),
        sender: sender.to_vec(),
        expiration_params: exp,
        ticket_sender_params,
        expected_price,
    }
}

/// Expiry of ticket params in unix seconds, as devnet encodes it.
pub(crate) fn params_expiry(params: &TicketParams) -> Option<i64> {
    be_u128(&params.expiration_block).and_then(|v| i64::try_from(v).ok())
}

/// The orchestrator's ticket book: mints params and redeems tickets.
#[derive(Debug)]
pub(crate) struct TicketBook {
    keys: Keys,
    secret: [u8; 32],
    recipient: Address,
    face_value: u128,
    win_prob: [u8; 32],
    ttl_secs: i64,
    used: HashMap<Vec<u8>, HashSet<u32>>,
}

impl TicketBook {
    /// A book for `recipient` whose tickets are each worth `ev` wei (1 in 1000 wins).
    pub(crate) fn new(keys: Keys, recipient: Address, ev: u128, ttl_secs: i64) -> Self {
        let mut win_prob = [0xffu8; 32];
        let top = (u64::MAX / 1000).to_be_bytes();
        win_prob[..8].copy_from_slice(&top);
        let face_value = ev.max(1).saturating_mul(1000);
        Self {
            secret: keys.derive("tickets"),
            keys,
            recipient,
            face_value,
            win_prob,
            ttl_secs,
            used: HashMap::new(),
        }
    }

    fn rand_hash(&self, seed: &[u8], expiry: &[u8], round: i64) -> [u8; 32] {
        hmac(&self.secret, &[seed, expiry, &round.to_be_bytes()])
    }

    /// Fresh params at `now` (unix seconds) with a random `seed`.
    pub(crate) fn params(&self, now: i64, seed: [u8; 32]) -> TicketParams {
        let expiry = be_bytes(u128::try_from(now + self.ttl_secs).unwrap_or(0));
        let round = now / ROUND_SECS;
        TicketParams {
            recipient: self.recipient.to_vec(),
            face_value: be_bytes(self.face_value),
            win_prob: self.win_prob.to_vec(),
            recipient_rand_hash: self.rand_hash(&seed, &expiry, round).to_vec(),
            seed: seed.to_vec(),
            expiration_block: expiry,
            expiration_params: Some(TicketExpirationParams {
                creation_round: round,
                creation_round_block_hash: hmac(&self.secret, &[b"round", &round.to_be_bytes()])
                    .to_vec(),
            }),
        }
    }

    /// Validates every ticket of `payment` at `now` and returns the total expected value to
    /// credit. Payments without tickets are worth 0. Nothing is recorded unless every ticket
    /// is valid, so a refused payment can be retried.
    pub(crate) fn redeem(&mut self, payment: &Payment, now: i64) -> Result<u128, TicketError> {
        let Some(tp) = payment.ticket_params.as_ref() else {
            return Ok(0);
        };
        if payment.sender.len() != 20 {
            return Err(TicketError::MissingSender);
        }
        if payment.expected_price.is_none() {
            return Err(TicketError::MissingPrice);
        }
        if tp.recipient != self.recipient {
            return Err(TicketError::Recipient);
        }
        let round = payment
            .expiration_params
            .as_ref()
            .map_or(0, |e| e.creation_round);
        if !ct_eq(
            &self.rand_hash(&tp.seed, &tp.expiration_block, round),
            &tp.recipient_rand_hash,
        ) {
            return Err(TicketError::RandHash);
        }
        if params_expiry(tp).is_none_or(|e| e < now) {
            return Err(TicketError::Expired);
        }
        let used = self.used.get(&tp.recipient_rand_hash);
        let mut seen = HashSet::new();
        for t in &payment.ticket_sender_params {
            if used.is_some_and(|u| u.contains(&t.sender_nonce)) || !seen.insert(t.sender_nonce) {
                return Err(TicketError::Nonce);
            }
            let pre = ticket_preimage(
                tp,
                &payment.sender,
                t.sender_nonce,
                payment.expiration_params.as_ref(),
            );
            if !self.keys.verify(&payment.sender, &pre, &t.sig) {
                return Err(TicketError::Signature);
            }
        }
        let ev = ticket_ev(tp);
        let n = seen.len() as u128;
        self.used
            .entry(tp.recipient_rand_hash.clone())
            .or_default()
            .extend(seen);
        Ok(ev.saturating_mul(n))
    }

    /// Expected value of one ticket of this book.
    pub(crate) fn ev(&self) -> u128 {
        ticket_ev(&self.params(0, [0; 32]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> (Keys, TicketBook) {
        let keys = Keys::new([3; 32]);
        let o = keys.address("orchestrator");
        let b = TicketBook::new(keys.clone(), o, 5_000, 600);
        (keys, b)
    }

    fn price() -> Option<lpgw_proto::PriceInfo> {
        Some(lpgw_proto::PriceInfo {
            price_per_unit: 1,
            pixels_per_unit: 1,
            ..Default::default()
        })
    }

    #[test]
    fn ev_of_book_params_is_configured_value() {
        let (_, b) = book();
        let ev = b.ev();
        assert!((4_999..=5_000).contains(&ev), "{ev}");
        let mut all = TicketParams {
            face_value: vec![100],
            win_prob: vec![0xff; 32],
            ..Default::default()
        };
        assert_eq!(ticket_ev(&all), 100);
        all.win_prob = vec![];
        assert_eq!(ticket_ev(&all), 0);
    }

    #[test]
    fn redeem_credits_ev_per_ticket_once() {
        let (keys, mut b) = book();
        let s = keys.address("signer");
        let params = b.params(1_000, [9; 32]);
        let p = make_payment(&keys, &s, &params, 0, 3, price());
        let ev = b.ev();
        assert_eq!(b.redeem(&p, 1_000), Ok(3 * ev));
        assert_eq!(b.redeem(&p, 1_000), Err(TicketError::Nonce));
        let p2 = make_payment(&keys, &s, &params, 3, 1, price());
        assert_eq!(b.redeem(&p2, 1_001), Ok(ev));
    }

    #[test]
    fn redeem_rejects_tampering_expiry_and_foreign_params() {
        let (keys, mut b) = book();
        let s = keys.address("signer");
        let params = b.params(1_000, [9; 32]);
        let good = make_payment(&keys, &s, &params, 0, 1, price());

        assert_eq!(b.redeem(&good, 1_601), Err(TicketError::Expired));

        let mut p = good.clone();
        p.ticket_sender_params[0].sig[0] ^= 1;
        assert_eq!(b.redeem(&p, 1_000), Err(TicketError::Signature));

        let mut p = good.clone();
        if let Some(tp) = p.ticket_params.as_mut() {
            tp.expiration_block = be_bytes(9_999);
        }
        assert_eq!(b.redeem(&p, 1_000), Err(TicketError::RandHash));

        let mut p = good.clone();
        p.sender.clear();
        assert_eq!(b.redeem(&p, 1_000), Err(TicketError::MissingSender));

        let mut p = good.clone();
        p.expected_price = None;
        assert_eq!(b.redeem(&p, 1_000), Err(TicketError::MissingPrice));

        let other = TicketBook::new(keys.clone(), keys.address("other"), 5_000, 600);
        let foreign = make_payment(&keys, &s, &other.params(1_000, [1; 32]), 0, 1, price());
        assert_eq!(b.redeem(&foreign, 1_000), Err(TicketError::Recipient));

        assert_eq!(b.redeem(&Payment::default(), 1_000), Ok(0));
        // Nothing above consumed the good ticket's nonce.
        assert!(b.redeem(&good, 1_000).is_ok());
    }
}

//! The value of a signed payment: what the orchestrator credits for it.

use lpgw_proto::TicketParams;

/// Expected value in wei of a `Livepeer-Payment` header: the number of tickets times each
/// ticket's `faceValue × winProb / 2^256`. This is the figure an orchestrator credits to the
/// session's balance, whether or not a ticket wins. An undecodable or empty header is 0.
pub(crate) fn payment_value_wei(header: &str) -> u128 {
    let Ok(p) = lpgw_proto::decode_payment(header) else {
        return 0;
    };
    let Some(params) = p.ticket_params.as_ref() else {
        return 0;
    };
    let n = u128::try_from(p.ticket_sender_params.len()).unwrap_or(u128::MAX);
    ticket_ev(params).saturating_mul(n)
}

/// One ticket's expected value in wei, rounded down. Uses the top 64 bits of `winProb`
/// (exact to under one wei for face values below 2^64); face values past 2^128 saturate.
fn ticket_ev(params: &TicketParams) -> u128 {
    let fv = &params.face_value;
    let first = fv.iter().position(|&x| x != 0).unwrap_or(fv.len());
    let sig = &fv[first..];
    if sig.len() > 16 {
        return u128::MAX;
    }
    let fv = sig.iter().fold(0u128, |acc, &x| (acc << 8) | u128::from(x));
    // Left-pad winProb to 32 bytes and keep its top 8.
    let wp = &params.win_prob[params.win_prob.len().saturating_sub(32)..];
    let mut padded = [0u8; 32];
    padded[32 - wp.len()..].copy_from_slice(wp);
    let mut top = [0u8; 8];
    top.copy_from_slice(&padded[..8]);
    let top = u128::from(u64::from_be_bytes(top));
    if top == 0 {
        return 0;
    }
    // (top + 1) / 2^64 approximates winProb / 2^256 from above by less than 2^-64.
    match fv.checked_mul(top + 1) {
        Some(p) => p >> 64,
        None => (fv >> 64).saturating_mul(top + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lpgw_proto::{Payment, TicketSenderParams};

    fn header(face_value: u128, win_prob: &[u8], tickets: usize) -> String {
        let fv = face_value.to_be_bytes();
        let first = fv.iter().position(|&x| x != 0).unwrap_or(fv.len());
        let p = Payment {
            ticket_params: Some(TicketParams {
                face_value: fv[first..].to_vec(),
                win_prob: win_prob.to_vec(),
                ..TicketParams::default()
            }),
            ticket_sender_params: vec![TicketSenderParams::default(); tickets],
            ..Payment::default()
        };
        lpgw_proto::encode_payment(&p)
    }

    #[test]
    fn value_is_tickets_times_face_value_times_win_prob() {
        // winProb = 2^255 (one half): 1000 wei face value is worth 500 per ticket.
        let mut half = [0u8; 32];
        half[0] = 0x80;
        assert_eq!(payment_value_wei(&header(1000, &half, 1)), 500);
        assert_eq!(payment_value_wei(&header(1000, &half, 3)), 1500);
        // winProb = 2^256 - 1 (certain): the face value itself.
        assert_eq!(payment_value_wei(&header(7_000, &[0xff; 32], 2)), 14_000);
        // A tiny winProb is worth nothing after rounding down.
        assert_eq!(payment_value_wei(&header(1000, &[1], 1)), 0);
    }

    #[test]
    fn unusable_headers_are_worth_nothing() {
        assert_eq!(payment_value_wei(""), 0);
        assert_eq!(payment_value_wei("not base64!"), 0);
        assert_eq!(payment_value_wei(&header(1000, &[0xff; 32], 0)), 0);
    }
}

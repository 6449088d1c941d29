//! Codecs of the payment-bearing headers.
//!
//! Both headers carry a protobuf message encoded with base64 standard encoding, padded
//! (go-livepeer `server/segment_rpc.go`). An empty `Livepeer-Payment` is valid and decodes to
//! an empty [`Payment`]: that is what an offchain gateway sends.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost::Message;

use crate::net::{Payment, SegData};

/// Header carrying the base64 protobuf [`Payment`].
pub const LIVEPEER_PAYMENT: &str = "Livepeer-Payment";

/// Header carrying the base64 protobuf [`SegData`] (segment credentials).
pub const LIVEPEER_SEGMENT: &str = "Livepeer-Segment";

/// Why a header value could not be decoded.
///
/// The `Display` texts match go-livepeer's error prefixes, which orchestrators put in their
/// plain-text error bodies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The value is not valid padded standard base64.
    #[error("base64 decode error: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The bytes are not a valid protobuf message of the expected type.
    #[error("protobuf unmarshal error: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Encodes a message as padded standard base64 of its protobuf bytes.
pub fn encode_b64<M: Message>(msg: &M) -> String {
    STANDARD.encode(msg.encode_to_vec())
}

/// Decodes padded standard base64 of protobuf bytes; an empty value is the default message.
pub fn decode_b64<M: Message + Default>(value: &str) -> Result<M, HeaderError> {
    let bytes = STANDARD.decode(value.trim())?;
    Ok(M::decode(bytes.as_slice())?)
}

/// Encodes a [`Payment`] for the `Livepeer-Payment` header.
pub fn encode_payment(payment: &Payment) -> String {
    encode_b64(payment)
}

/// Decodes a `Livepeer-Payment` header value; an empty value is an empty [`Payment`].
pub fn decode_payment(value: &str) -> Result<Payment, HeaderError> {
    decode_b64(value)
}

/// Encodes segment credentials for the `Livepeer-Segment` header.
pub fn encode_seg_data(seg: &SegData) -> String {
    encode_b64(seg)
}

/// Decodes a `Livepeer-Segment` header value; an empty value is an empty [`SegData`].
pub fn decode_seg_data(value: &str) -> Result<SegData, HeaderError> {
    decode_b64(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{AuthToken, PriceInfo, TicketSenderParams};

    #[test]
    fn empty_payment_header_is_empty_payment() {
        let p = decode_payment("").expect("empty header is valid");
        assert_eq!(p, Payment::default());
        assert_eq!(encode_payment(&Payment::default()), "");
    }

    #[test]
    fn payment_round_trip_uses_padded_standard_base64() {
        let p = Payment {
            sender: vec![0xab; 20],
            expected_price: Some(PriceInfo {
                price_per_unit: 7,
                pixels_per_unit: 1,
                ..Default::default()
            }),
            ticket_sender_params: vec![TicketSenderParams {
                sender_nonce: 3,
                sig: vec![1; 65],
            }],
            ..Default::default()
        };
        let h = encode_payment(&p);
        let raw = p.encode_to_vec();
        assert_eq!(STANDARD.decode(&h).expect("standard base64"), raw);
        assert_eq!(
            h.ends_with('='),
            !raw.len().is_multiple_of(3),
            "padded: {h}"
        );
        assert_eq!(decode_payment(&h).expect("round trip"), p);
    }

    #[test]
    fn known_bytes_match_field_numbers() {
        // AuthToken{token: [1], session_id: "ab", expiration: 5} in wire order:
        // field 1 bytes, field 2 string, field 3 varint.
        let seg = SegData {
            manifest_id: b"m".to_vec(),
            auth_token: Some(AuthToken {
                token: vec![1],
                session_id: "ab".into(),
                expiration: 5,
            }),
            ..Default::default()
        };
        let bytes = seg.encode_to_vec();
        assert_eq!(
            bytes,
            [
                0x0a, 1, b'm', 0x42, 9, 0x0a, 1, 1, 0x12, 2, b'a', b'b', 0x18, 5
            ]
        );
    }

    #[test]
    fn bad_base64_and_bad_protobuf_are_distinct_errors() {
        let e = decode_payment("!!!not base64").unwrap_err();
        assert!(matches!(e, HeaderError::Base64(_)));
        assert!(e.to_string().starts_with("base64 decode error"));
        // 0x0a = field 1 length-delimited, claiming 50 bytes that are not there.
        let e = decode_seg_data(&STANDARD.encode([0x0a, 50, 1])).unwrap_err();
        assert!(matches!(e, HeaderError::Protobuf(_)));
        assert!(e.to_string().starts_with("protobuf unmarshal error"));
    }
}

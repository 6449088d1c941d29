//! Segment-credential checks (server/segment_rpc.go:401-452).

use lpgw_proto::SegData;

use super::{Orch, caps};
use crate::auth::AuthError;
use crate::tickets::seg_preimage;

/// Why `Livepeer-Segment` was refused (answered 403); texts are go-livepeer's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SegCredsError {
    /// Not base64 or not a `SegData`.
    #[error("ErrorSegEncoding")]
    Encoding,
    /// The payer's signature does not verify (onchain only).
    #[error("ErrSegSig")]
    Signature,
    /// The requested capabilities are not offered here.
    #[error("incompatible capabilities")]
    Capabilities,
    /// The auth token is missing, forged or expired.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Decodes and verifies segment credentials from `sender` at `now` (unix seconds).
pub(crate) fn verify(
    o: &Orch,
    header: &str,
    sender: &[u8],
    now: i64,
) -> Result<SegData, SegCredsError> {
    let seg = lpgw_proto::decode_seg_data(header).map_err(|_| SegCredsError::Encoding)?;
    if o.onchain && !o.keys.verify(sender, &seg_preimage(&seg), &seg.sig) {
        return Err(SegCredsError::Signature);
    }
    if let Some(want) = &seg.capabilities
        && !caps::compatible(want, &o.capabilities())
    {
        return Err(SegCredsError::Capabilities);
    }
    o.auth.verify(seg.auth_token.as_ref(), now)?;
    Ok(seg)
}

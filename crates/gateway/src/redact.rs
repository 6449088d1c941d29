//! Debug printing that leaves credentials out, shared by the settings and the token.

use std::collections::BTreeMap;

/// Header values can be credentials (`Authorization`): print names only.
pub(crate) struct HeaderNames<'a>(pub(crate) &'a BTreeMap<String, String>);

impl std::fmt::Debug for HeaderNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

//! What the orchestrator was paid: every accepted payment's ticket value, by sender and by
//! manifest. Served as `GET /devnet/ledger` so tests and operators check money against the
//! receiving side rather than the gateway's own counters. Devnet only: go-livepeer keeps
//! this in its accounting, not behind an endpoint.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Totals of accepted payments.
#[derive(Debug, Default)]
pub(crate) struct Receipts {
    payments: u64,
    value_wei: u128,
    by_sender: BTreeMap<String, (u64, u128)>,
    by_manifest: BTreeMap<String, (u64, u128)>,
}

impl Receipts {
    /// One accepted payment of `value_wei` (its tickets' expected value) from `sender`
    /// (raw address bytes) for `manifest`.
    pub(crate) fn record(&mut self, sender: &[u8], manifest: &str, value_wei: u128) {
        let hex: String = sender.iter().map(|b| format!("{b:02x}")).collect();
        let add = |e: &mut (u64, u128)| {
            e.0 = e.0.saturating_add(1);
            e.1 = e.1.saturating_add(value_wei);
        };
        self.payments = self.payments.saturating_add(1);
        self.value_wei = self.value_wei.saturating_add(value_wei);
        add(self.by_sender.entry(format!("0x{hex}")).or_default());
        add(self.by_manifest.entry(manifest.to_owned()).or_default());
    }

    /// Payments accepted and their value in wei.
    pub(crate) fn totals(&self) -> (u64, u128) {
        (self.payments, self.value_wei)
    }

    /// `{"payments": N, "value_wei": "<decimal>", "by_sender": {addr: {payments,
    /// value_wei}}, "by_manifest": {...}}`; wei are decimal strings (they outgrow JSON's
    /// safe integers).
    pub(crate) fn to_json(&self) -> Value {
        let map = |m: &BTreeMap<String, (u64, u128)>| -> Value {
            m.iter()
                .map(|(k, (n, v))| {
                    (
                        k.clone(),
                        json!({"payments": n, "value_wei": v.to_string()}),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        json!({
            "payments": self.payments,
            "value_wei": self.value_wei.to_string(),
            "by_sender": map(&self.by_sender),
            "by_manifest": map(&self.by_manifest),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_split_by_sender_and_manifest() {
        let mut r = Receipts::default();
        assert_eq!(
            r.to_json(),
            json!({"payments": 0, "value_wei": "0", "by_sender": {}, "by_manifest": {}})
        );
        r.record(&[0xab, 0x01], "m1", 10);
        r.record(&[0xab, 0x01], "m2", u128::MAX);
        r.record(&[0x02], "m1", 5);
        assert_eq!(r.totals(), (3, u128::MAX));
        let v = r.to_json();
        assert_eq!(v["by_sender"]["0xab01"]["payments"], 2);
        assert_eq!(v["by_sender"]["0x02"]["value_wei"], "5");
        assert_eq!(v["by_manifest"]["m1"]["value_wei"], "15");
        assert_eq!(v["value_wei"], u128::MAX.to_string());
    }
}

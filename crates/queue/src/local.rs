//! Queue items for local domains (bounces to local senders, mostly): handed to the SMTP
//! crate's local delivery, which resolves accounts, aliases and catch-alls.

use mailfleet_delivery::{AddressOutcome, deliver_to_addresses};
use mailfleet_store::{BlobStore, Store};

use crate::outcome::{Failure, RcptResult};

/// Delivers `message` from `sender` to local `addresses` (one result each, in order). The
/// message gets a `Return-Path` with the envelope sender, as a final delivery does.
pub async fn deliver_local(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    sender: &str,
    addresses: &[String],
    message: &[u8],
) -> Vec<RcptResult> {
    let mut bytes = format!("Return-Path: <{sender}>\r\n").into_bytes();
    bytes.extend_from_slice(message);
    match deliver_to_addresses(store, blobs, sender, addresses, &bytes, true).await {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|o| match o {
                AddressOutcome::Accepted => RcptResult::Delivered {
                    remote: None,
                    reply: "delivered to a local mailbox".into(),
                    relayed: false,
                },
                AddressOutcome::Unknown => {
                    RcptResult::Failed(Failure::permanent("5.1.1", "no such local user"))
                }
                AddressOutcome::Disabled => {
                    RcptResult::Failed(Failure::permanent("5.2.1", "mailbox disabled"))
                }
                AddressOutcome::OverQuota => {
                    RcptResult::Failed(Failure::permanent("5.2.2", "mailbox full"))
                }
                AddressOutcome::Failed(why) => RcptResult::Failed(Failure::permanent("5.1.3", why)),
            })
            .collect(),
        Err(e) => {
            let f = Failure::temporary("4.3.0", format!("local delivery failed: {e}"));
            addresses
                .iter()
                .map(|_| RcptResult::Deferred(f.clone()))
                .collect()
        }
    }
}

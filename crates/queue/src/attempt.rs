//! One attempt at one claimed queue item: route its pending recipients, deliver each route,
//! record the results, send the DSNs they call for, and tell the store what is left; all the
//! while renewing the item's lease.

use std::collections::{BTreeMap, HashMap};

use mailfleet_store::address::domain_of;
use mailfleet_store::{
    NewQueueItem, QueueItem, QueueOutcome, QueueRecipient, QueuedMessage, StoreError, now,
};

use crate::deliver::{Envelope, Rcpt, SessionParams, deliver};
use crate::dns::{Hop, host_hops, mx_hops};
use crate::dsn::{Action, RecipientReport, Report};
use crate::outcome::{Failure, RcptResult};
use crate::settings::{Policy, Transport};
use crate::worker::Inner;

/// Where a group of recipients goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    Local,
    /// `explicit`: from a transport entry or the smart host rather than the domain's own MX,
    /// so a DNS answer about it says nothing final about the recipient.
    Remote {
        transport: Transport,
        explicit: bool,
    },
}

fn wants(notify: &[String], what: &str) -> bool {
    if notify.iter().any(|n| n.eq_ignore_ascii_case("NEVER")) {
        return false;
    }
    if notify.is_empty() {
        // RFC 3461 §5.3: without NOTIFY, failures (and, here, delays) are reported.
        return what != "SUCCESS";
    }
    notify.iter().any(|n| n.eq_ignore_ascii_case(what))
}

/// Runs the attempt and records its outcome while keeping the item's lease. If the lease is
/// lost (another node may have the item now) the attempt stops at once and records nothing.
/// Errors are logged: the lease then runs out and the item is tried again.
pub(crate) async fn run(inner: &Inner, policy: &Policy, item: QueueItem) {
    let id = item.id;
    let until = item
        .lease_until
        .unwrap_or_else(|| now().saturating_add(policy.lease_secs()));
    let lease = crate::lease::keep(
        inner.ctx.store.as_ref(),
        &inner.holder,
        id,
        policy.lease_secs(),
        until,
    );
    let outcome = tokio::select! {
        biased;
        lost = lease => {
            tracing::warn!(id, "queue item: {lost}; attempt abandoned, nothing recorded");
            return;
        }
        r = attempt(inner, policy, item) => r,
    };
    if let Err(e) = outcome {
        match e {
            StoreError::LeaseLost(_) => {
                tracing::warn!(id, "queue item: lease lost before the result was recorded")
            }
            e => tracing::warn!(id, "queue item: cannot record the attempt: {e}"),
        }
    }
}

/// Delivers within `queue.attempt_timeout` and concludes. Routes finished before the timeout
/// keep their results; the recipients still open are deferred.
async fn attempt(inner: &Inner, policy: &Policy, item: QueueItem) -> Result<(), StoreError> {
    let mut results = Vec::new();
    let limit = policy.attempt_timeout;
    let timed_out =
        tokio::time::timeout(limit, deliver_pending(inner, policy, &item, &mut results))
            .await
            .is_err();
    if timed_out {
        let f = Failure::temporary(
            "4.4.2",
            format!(
                "attempt took longer than {} (queue.attempt_timeout)",
                humantime::format_duration(limit)
            ),
        );
        tracing::info!(id = item.id, "{}", f.diagnostic);
        let open: Vec<usize> = pending_indices(&item)
            .into_iter()
            .filter(|i| !results.iter().any(|(j, _)| j == i))
            .collect();
        results.extend(
            open.into_iter()
                .map(|i| (i, RcptResult::Deferred(f.clone()))),
        );
    }
    conclude(inner, policy, item, results).await
}

fn pending_indices(item: &QueueItem) -> Vec<usize> {
    item.recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == "pending")
        .map(|(i, _)| i)
        .collect()
}

/// Delivers the pending recipients, one session per route, adding (recipient index, result)
/// to `out` as each route finishes (so a cut-off attempt keeps what was done).
async fn deliver_pending(
    inner: &Inner,
    policy: &Policy,
    item: &QueueItem,
    out: &mut Vec<(usize, RcptResult)>,
) {
    let pending = pending_indices(item);
    let message = match inner.ctx.blobs.get(&item.blob_id).await {
        Ok(m) => strip_return_path(m),
        Err(e) => {
            let f = Failure::temporary("4.3.0", format!("message content unavailable: {e}"));
            out.extend(
                pending
                    .into_iter()
                    .map(|i| (i, RcptResult::Deferred(f.clone()))),
            );
            return;
        }
    };

    let mut local_domains: HashMap<String, bool> = HashMap::new();
    let mut routes: BTreeMap<Route, Vec<usize>> = BTreeMap::new();
    for i in pending {
        let domain = domain_of(&item.recipients[i].address).to_ascii_lowercase();
        let local = match local_domains.get(&domain) {
            Some(l) => *l,
            None => match inner.ctx.store.domain_exists(&domain).await {
                Ok(l) => *local_domains.entry(domain.clone()).or_insert(l),
                Err(e) => {
                    let f = Failure::temporary("4.3.0", format!("store unavailable: {e}"));
                    out.push((i, RcptResult::Deferred(f)));
                    continue;
                }
            },
        };
        let route = if local {
            Route::Local
        } else {
            let transport = policy.transport_for(&domain);
            let explicit = transport != Transport::Mx { domain };
            Route::Remote {
                transport,
                explicit,
            }
        };
        routes.entry(route).or_default().push(i);
    }

    for (route, idxs) in routes {
        let results = match &route {
            Route::Local => {
                let addrs: Vec<String> = idxs
                    .iter()
                    .map(|&i| item.recipients[i].address.clone())
                    .collect();
                crate::local::deliver_local(
                    inner.ctx.store.as_ref(),
                    inner.ctx.blobs.as_ref(),
                    &item.sender,
                    &addrs,
                    &message,
                )
                .await
            }
            Route::Remote {
                transport,
                explicit,
            } => deliver_remote(inner, policy, item, &message, transport, *explicit, &idxs).await,
        };
        out.extend(idxs.into_iter().zip(results));
    }
}

async fn deliver_remote(
    inner: &Inner,
    policy: &Policy,
    item: &QueueItem,
    message: &[u8],
    transport: &Transport,
    explicit: bool,
    idxs: &[usize],
) -> Vec<RcptResult> {
    let all = |f: Failure| {
        idxs.iter()
            .map(|_| RcptResult::from_failure(f.clone()))
            .collect()
    };
    let resolver = match inner.resolvers.get(&policy.dns_servers) {
        Ok(r) => r,
        Err(f) => return all(f),
    };
    let hops: Result<Vec<Hop>, Failure> = match transport {
        Transport::Mx { domain } => mx_hops(&resolver, domain, policy.port).await,
        Transport::Host { host, port } => host_hops(&resolver, host, *port).await,
        Transport::SmartHost => match &policy.smarthost {
            Some(sh) => host_hops(&resolver, &sh.host, sh.port).await,
            None => Err(Failure::temporary(
                "4.3.5",
                "a transport entry names the smart host but queue.smarthost is empty",
            )),
        },
    };
    let hops = match hops {
        Ok(h) => h,
        Err(f) if explicit => return all(f.into_temporary()),
        Err(f) => return all(f),
    };
    let params = SessionParams {
        helo: &inner.ctx.config.hostname,
        tls: policy.tls,
        auth: match transport {
            Transport::SmartHost => policy.smarthost.as_ref(),
            _ => None,
        },
        connect_timeout: policy.connect_timeout,
        command_timeout: policy.command_timeout,
    };
    let env = Envelope {
        sender: &item.sender,
        envid: item.envid.as_deref(),
        ret: item.ret.as_deref(),
        message,
    };
    let rcpts: Vec<Rcpt<'_>> = idxs
        .iter()
        .map(|&i| {
            let r = &item.recipients[i];
            Rcpt {
                address: &r.address,
                notify: &r.notify,
                orcpt: r.orcpt.as_deref(),
            }
        })
        .collect();
    deliver(&hops, &params, &env, &rcpts).await
}

fn report(r: &QueueRecipient, action: Action, f: Option<&Failure>) -> RecipientReport {
    RecipientReport {
        address: r.address.clone(),
        orcpt: r.orcpt.clone(),
        action,
        status: f
            .map(|f| f.status.clone())
            .unwrap_or_else(|| "2.0.0".into()),
        remote: f.and_then(|f| f.remote.clone()),
        diagnostic: f.map(|f| f.diagnostic.clone()),
        diagnostic_is_smtp: f.is_some_and(|f| f.from_smtp),
    }
}

/// Gives up a claimed item past its lifetime without an attempt: every pending recipient fails
/// (`5.4.7`), with the notices NOTIFY asks for, and the item is finished (the lifetime sweep).
pub(crate) async fn give_up(
    inner: &Inner,
    policy: &Policy,
    item: QueueItem,
) -> Result<(), StoreError> {
    conclude(inner, policy, item, Vec::new()).await
}

/// Applies the results, sends any DSN, and finishes the item in the store.
async fn conclude(
    inner: &Inner,
    policy: &Policy,
    item: QueueItem,
    results: Vec<(usize, RcptResult)>,
) -> Result<(), StoreError> {
    let now = now();
    let mut recipients = item.recipients.clone();
    let mut reports = Vec::new();
    let mut last_failure: HashMap<usize, Failure> = HashMap::new();
    for (i, result) in results {
        let r = &mut recipients[i];
        match result {
            RcptResult::Delivered {
                remote, relayed, ..
            } => {
                r.status = "delivered".into();
                r.last_error = None;
                // A next hop that does DSN reports success itself.
                if wants(&r.notify, "SUCCESS") && (remote.is_none() || relayed) {
                    let action = if remote.is_none() {
                        Action::Delivered
                    } else {
                        Action::Relayed
                    };
                    let mut rep = report(r, action, None);
                    rep.remote = remote;
                    reports.push(rep);
                }
            }
            RcptResult::Failed(f) => {
                r.status = "failed".into();
                r.last_error = Some(f.summary());
                tracing::info!(id = item.id, rcpt = %r.address, "delivery failed: {}", f.summary());
                if wants(&r.notify, "FAILURE") {
                    reports.push(report(r, Action::Failed, Some(&f)));
                }
            }
            RcptResult::Deferred(f) => {
                r.last_error = Some(f.summary());
                tracing::info!(id = item.id, rcpt = %r.address, "delivery deferred: {}", f.summary());
                last_failure.insert(i, f);
            }
        }
    }

    let lifetime = i64::try_from(policy.lifetime.as_secs()).unwrap_or(i64::MAX);
    let expires = item.created.saturating_add(lifetime);
    let mut warned = item.warned;
    let pending: Vec<usize> = (0..recipients.len())
        .filter(|&i| recipients[i].status == "pending")
        .collect();
    if !pending.is_empty() && now >= expires {
        for &i in &pending {
            let r = &mut recipients[i];
            let mut f = last_failure
                .remove(&i)
                .unwrap_or_else(|| Failure::temporary("4.4.7", "not delivered"));
            let why = format!(
                "gave up after {} (queue.lifetime): {}",
                humantime::format_duration(policy.lifetime),
                f.diagnostic
            );
            f.status = "5.4.7".into();
            if !f.from_smtp {
                f.diagnostic = why.clone();
            }
            r.status = "failed".into();
            r.last_error = Some(why);
            tracing::info!(id = item.id, rcpt = %r.address, "delivery expired");
            if wants(&r.notify, "FAILURE") {
                reports.push(report(r, Action::Failed, Some(&f)));
            }
        }
    } else if !pending.is_empty()
        && !warned
        && policy
            .delay_warning
            .is_some_and(|d| now - item.created >= i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    {
        warned = true;
        for &i in &pending {
            let r = &recipients[i];
            if wants(&r.notify, "DELAY") {
                reports.push(report(r, Action::Delayed, last_failure.get(&i)));
            }
        }
    }

    // Bounces are never bounced: a notification goes only to a non-empty sender. It is
    // queued with the outcome below, in one transaction.
    let notice = if !reports.is_empty() && !item.sender.is_empty() {
        Some(build_dsn(inner, &item, reports, now, expires).await?)
    } else {
        None
    };

    let still_pending = recipients.iter().any(|r| r.status == "pending");
    let outcome = if still_pending {
        let wait = i64::try_from(policy.retry_after(item.attempts).as_secs()).unwrap_or(i64::MAX);
        // Never wait past the lifetime: the bounce should go out on time.
        let next_attempt = now.saturating_add(wait.max(1)).min(expires.max(now + 1));
        let last_error = recipients
            .iter()
            .filter(|r| r.status == "pending")
            .find_map(|r| r.last_error.clone());
        QueueOutcome::Retry {
            recipients,
            next_attempt,
            last_error,
            warned,
        }
    } else {
        QueueOutcome::Done
    };
    let notice_id = inner
        .ctx
        .store
        .finish_queue_item(item.id, &inner.holder, &outcome, notice.as_ref())
        .await?;
    if let Some(dsn) = notice_id {
        tracing::info!(
            id = item.id,
            dsn,
            to = %item.sender,
            "delivery status notification queued"
        );
    }
    Ok(())
}

/// Builds the notification for the original sender and stores its blob; it is queued (empty
/// reverse path) with the attempt's outcome, and the queue delivers it like any other item,
/// locally when the sender's domain is ours.
async fn build_dsn(
    inner: &Inner,
    item: &QueueItem,
    recipients: Vec<RecipientReport>,
    now: i64,
    expires: i64,
) -> Result<QueuedMessage, StoreError> {
    let original = inner.ctx.blobs.get(&item.blob_id).await.unwrap_or_default();
    let report = Report {
        reporting_mta: &inner.ctx.config.hostname,
        to: &item.sender,
        envid: item.envid.as_deref(),
        ret: item.ret.as_deref(),
        arrival: item.created,
        last_attempt: now,
        will_retry_until: Some(expires),
        recipients,
        original: &original,
    };
    let bytes = crate::dsn::build(&report, now);
    let blob_id = inner.ctx.blobs.put(&bytes).await?;
    let mut to = QueueRecipient::new(item.sender.clone());
    to.notify = vec!["NEVER".into()];
    Ok(QueuedMessage {
        blob_id,
        size: bytes.len() as i64,
        item: NewQueueItem {
            sender: String::new(),
            recipients: vec![to],
            envid: None,
            ret: None,
            next_attempt: now,
        },
    })
}

/// The message without the `Return-Path` field the receiving node put first: that field
/// belongs to a final delivery (RFC 5321 §4.4), so a relayed copy goes out without it and a
/// local delivery from the queue writes its own. Only a leading field is taken (with any
/// folded continuation lines); anything else in the message is left as it came.
fn strip_return_path(mut message: Vec<u8>) -> Vec<u8> {
    const NAME: &[u8] = b"return-path:";
    if message.len() < NAME.len() || !message[..NAME.len()].eq_ignore_ascii_case(NAME) {
        return message;
    }
    let mut end = 0;
    loop {
        let Some(lf) = message[end..].iter().position(|&b| b == b'\n') else {
            // A message that is nothing but the field: leave it alone.
            return message;
        };
        end += lf + 1;
        // A continuation line starts with white space.
        if !matches!(message.get(end), Some(b' ' | b'\t')) {
            break;
        }
    }
    message.drain(..end);
    message
}

#[cfg(test)]
mod tests {
    use super::strip_return_path;

    fn strip(s: &str) -> String {
        String::from_utf8(strip_return_path(s.as_bytes().to_vec())).unwrap()
    }

    #[test]
    fn only_a_leading_return_path_is_taken() {
        assert_eq!(
            strip("Return-Path: <a@b.test>\r\nReceived: x\r\n\r\nbody\r\n"),
            "Received: x\r\n\r\nbody\r\n"
        );
        assert_eq!(
            strip("return-path:\r\n <a@b.test>\r\nSubject: s\r\n\r\n"),
            "Subject: s\r\n\r\n"
        );
        let untouched = "Subject: s\r\nReturn-Path: <x@y>\r\n\r\nReturn-Path: in body\r\n";
        assert_eq!(strip(untouched), untouched);
        assert_eq!(strip("Return-Path: <a@b>"), "Return-Path: <a@b>");
        assert_eq!(strip(""), "");
    }
}

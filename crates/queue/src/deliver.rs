//! One delivery attempt over SMTP to one route: try its hosts in order until one takes the
//! transaction, and report what became of each recipient.
//!
//! A host that cannot be reached, greets with an error, refuses EHLO, MAIL or AUTH with a 4xx, or
//! cannot do the TLS that `queue.tls` asks for is skipped for the next one (RFC 5321 §5.1). Once
//! a host answers RCPT, its answers stand: 2xx then a 2xx to the data is delivered, 5xx failed,
//! 4xx or a broken connection deferred.

use std::time::Duration;

use crate::client::{ClientError, Connection, as_xtext};
use crate::dns::Hop;
use crate::outcome::{Failure, RcptResult};
use crate::settings::{SmartHost, TlsMode};
use crate::tls;

/// Most addresses tried in one attempt.
const MAX_HOPS: usize = 10;

/// The message and its envelope.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// Empty for a bounce.
    pub sender: &'a str,
    pub envid: Option<&'a str>,
    pub ret: Option<&'a str>,
    pub message: &'a [u8],
}

/// One recipient with its DSN parameters.
#[derive(Debug, Clone, Copy)]
pub struct Rcpt<'a> {
    pub address: &'a str,
    pub notify: &'a [String],
    /// `type;address`, the address in xtext as received (see [`as_xtext`]).
    pub orcpt: Option<&'a str>,
}

/// How to run the sessions.
#[derive(Debug, Clone, Copy)]
pub struct SessionParams<'a> {
    /// Our name in EHLO.
    pub helo: &'a str,
    pub tls: TlsMode,
    /// Credentials, when the route is the smart host.
    pub auth: Option<&'a SmartHost>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

enum HopError {
    /// Try the next host.
    Next(Failure),
    /// The TLS handshake failed in opportunistic mode: try this host again without TLS.
    Tls(Failure),
}

fn client_failure(hop: &Hop, e: &ClientError) -> Failure {
    let status = match e {
        ClientError::Connect(..) => "4.4.1",
        ClientError::Tls(_) | ClientError::StartTlsInjection => "4.7.5",
        _ => "4.4.2",
    };
    let mut f = Failure::temporary(status, format!("{} [{}]: {e}", hop.host, hop.addr));
    f.remote = Some(hop.host.clone());
    f
}

/// Delivers to the first host in `hops` that takes the transaction. Returns one result per
/// recipient, in order.
pub async fn deliver(
    hops: &[Hop],
    params: &SessionParams<'_>,
    env: &Envelope<'_>,
    rcpts: &[Rcpt<'_>],
) -> Vec<RcptResult> {
    let mut last = Failure::temporary("4.4.4", "no host to deliver to");
    for hop in hops.iter().take(MAX_HOPS) {
        match try_hop(hop, params, env, rcpts, true).await {
            Ok(results) => return results,
            Err(HopError::Next(f)) => last = f,
            Err(HopError::Tls(f)) => {
                tracing::info!(host = %hop.host, addr = %hop.addr, "{}; retrying without TLS", f.diagnostic);
                match try_hop(hop, params, env, rcpts, false).await {
                    Ok(results) => return results,
                    Err(HopError::Next(f) | HopError::Tls(f)) => last = f,
                }
            }
        }
        tracing::debug!(host = %hop.host, addr = %hop.addr, "host skipped: {}", last.diagnostic);
    }
    rcpts
        .iter()
        .map(|_| RcptResult::Deferred(last.clone()))
        .collect()
}

async fn try_hop(
    hop: &Hop,
    params: &SessionParams<'_>,
    env: &Envelope<'_>,
    rcpts: &[Rcpt<'_>],
    use_tls: bool,
) -> Result<Vec<RcptResult>, HopError> {
    let (mut conn, greeting) =
        Connection::connect(hop.addr, params.connect_timeout, params.command_timeout)
            .await
            .map_err(|e| HopError::Next(client_failure(hop, &e)))?;
    let result = if greeting.is_positive() {
        session(&mut conn, hop, params, env, rcpts, use_tls).await
    } else {
        Err(HopError::Next(
            Failure::from_reply(&greeting, &hop.host).into_temporary(),
        ))
    };
    conn.quit().await;
    result
}

fn next_on(hop: &Hop) -> impl Fn(ClientError) -> HopError + '_ {
    move |e| HopError::Next(client_failure(hop, &e))
}

async fn session(
    conn: &mut Connection,
    hop: &Hop,
    params: &SessionParams<'_>,
    env: &Envelope<'_>,
    rcpts: &[Rcpt<'_>],
    use_tls: bool,
) -> Result<Vec<RcptResult>, HopError> {
    let remote = hop.host.as_str();
    let refused = |r: &mailfleet_smtp_proto::Reply| {
        HopError::Next(Failure::from_reply(r, remote).into_temporary())
    };
    let r = conn.hello(params.helo).await.map_err(next_on(hop))?;
    if !r.is_positive() {
        return Err(refused(&r));
    }

    // STARTTLS as `queue.tls` says.
    if params.tls == TlsMode::Required && !conn.caps.starttls {
        let mut f = Failure::temporary(
            "4.7.4",
            format!("{remote} does not offer STARTTLS, which queue.tls = required demands"),
        );
        f.remote = Some(remote.to_string());
        return Err(HopError::Next(f));
    }
    if use_tls && params.tls != TlsMode::None && conn.caps.starttls {
        let config = match params.tls {
            TlsMode::Required => tls::verified(),
            _ => tls::opportunistic(),
        }
        .map_err(|e| HopError::Next(Failure::temporary("4.7.5", format!("TLS setup: {e}"))))?;
        match conn.starttls(config, remote).await {
            Ok(r) if r.code == 220 => {
                let r = conn.hello(params.helo).await.map_err(next_on(hop))?;
                if !r.is_positive() {
                    return Err(refused(&r));
                }
            }
            Ok(r) if params.tls == TlsMode::Required => return Err(refused(&r)),
            Ok(_) => {}
            Err(e) if params.tls == TlsMode::Required => {
                return Err(HopError::Next(client_failure(hop, &e)));
            }
            Err(e) => return Err(HopError::Tls(client_failure(hop, &e))),
        }
    }

    // AUTH towards the smart host, never in clear text unless allowed.
    if let Some(sh) = params.auth
        && let Some(user) = &sh.username
    {
        if !conn.tls && !sh.allow_cleartext {
            return Err(HopError::Next(Failure::temporary(
                "4.7.0",
                format!(
                    "{remote} offers no TLS; AUTH credentials are not sent in clear text \
                     (queue.smarthost.allow_cleartext)"
                ),
            )));
        }
        if conn.caps.auth.is_empty() {
            return Err(HopError::Next(Failure::temporary(
                "4.7.0",
                format!("{remote} does not offer AUTH"),
            )));
        }
        let r = conn.auth(user, &sh.password).await.map_err(next_on(hop))?;
        if !r.is_positive() {
            return Err(refused(&r));
        }
    }

    transaction(conn, hop, env, rcpts).await
}

async fn transaction(
    conn: &mut Connection,
    hop: &Hop,
    env: &Envelope<'_>,
    rcpts: &[Rcpt<'_>],
) -> Result<Vec<RcptResult>, HopError> {
    let remote = hop.host.as_str();
    let caps = conn.caps.clone();
    let mut results: Vec<Option<RcptResult>> = vec![None; rcpts.len()];

    // What the host cannot take, it fails permanently before we try.
    let needs_utf8 = !env.sender.is_ascii();
    let mut fail_all = None;
    if !safe_address(env.sender) {
        fail_all = Some(Failure::permanent("5.1.7", "malformed sender address"));
    }
    if needs_utf8 && !caps.smtputf8 {
        fail_all = Some(Failure::permanent(
            "5.6.7",
            format!("{remote} does not support SMTPUTF8, needed for the sender address"),
        ));
    }
    if let Some(limit) = caps.size
        && limit > 0
        && env.message.len() as u64 > limit
    {
        fail_all = Some(Failure::permanent(
            "5.3.4",
            format!(
                "message of {} bytes is larger than {remote} accepts ({limit})",
                env.message.len()
            ),
        ));
    }
    if let Some(f) = fail_all {
        return Ok(rcpts
            .iter()
            .map(|_| RcptResult::Failed(f.clone()))
            .collect());
    }
    let any_utf8_rcpt = rcpts.iter().any(|r| !r.address.is_ascii());

    let mut mail = format!("MAIL FROM:<{}>", env.sender);
    if caps.size.is_some() {
        mail.push_str(&format!(" SIZE={}", env.message.len()));
    }
    if caps.eightbitmime && env.message.iter().any(|b| *b >= 0x80) {
        mail.push_str(" BODY=8BITMIME");
    }
    if caps.smtputf8 && (needs_utf8 || any_utf8_rcpt) {
        mail.push_str(" SMTPUTF8");
    }
    if caps.dsn {
        if let Some(ret) = env.ret.filter(|r| matches!(*r, "FULL" | "HDRS")) {
            mail.push_str(&format!(" RET={ret}"));
        }
        if let Some(envid) = env.envid.filter(|e| !e.is_empty()) {
            mail.push_str(&format!(" ENVID={}", as_xtext(envid)));
        }
    }
    let r = conn
        .command(&mail, "the MAIL FROM reply")
        .await
        .map_err(next_on(hop))?;
    if r.is_permanent() {
        let f = Failure::from_reply(&r, remote);
        return Ok(rcpts
            .iter()
            .map(|_| RcptResult::Failed(f.clone()))
            .collect());
    }
    if !r.is_positive() {
        return Err(HopError::Next(Failure::from_reply(&r, remote)));
    }

    let mut accepted = Vec::new();
    for (i, rcpt) in rcpts.iter().enumerate() {
        if !safe_address(rcpt.address) || rcpt.address.is_empty() {
            results[i] = Some(RcptResult::Failed(Failure::permanent(
                "5.1.3",
                "malformed recipient address",
            )));
            continue;
        }
        if !rcpt.address.is_ascii() && !caps.smtputf8 {
            results[i] = Some(RcptResult::Failed(Failure::permanent(
                "5.6.7",
                format!("{remote} does not support SMTPUTF8, needed for this address"),
            )));
            continue;
        }
        let mut cmd = format!("RCPT TO:<{}>", rcpt.address);
        if caps.dsn {
            if !rcpt.notify.is_empty() {
                cmd.push_str(&format!(" NOTIFY={}", rcpt.notify.join(",")));
            }
            if let Some(orcpt) = rcpt.orcpt.filter(|o| !o.is_empty()) {
                let (kind, addr) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
                cmd.push_str(&format!(" ORCPT={};{}", kind.trim(), as_xtext(addr.trim())));
            }
        }
        match conn.command(&cmd, "the RCPT TO reply").await {
            Ok(r) if r.is_positive() => accepted.push(i),
            Ok(r) => results[i] = Some(RcptResult::from_failure(Failure::from_reply(&r, remote))),
            Err(e) if accepted.is_empty() && results.iter().all(Option::is_none) => {
                return Err(next_on(hop)(e));
            }
            Err(e) => {
                let f = client_failure(hop, &e);
                return Ok(fill(results, RcptResult::Deferred(f)));
            }
        }
    }
    if accepted.is_empty() {
        return Ok(fill(
            results,
            RcptResult::Deferred(Failure::temporary("4.0.0", "no recipient accepted")),
        ));
    }

    let outcome = match conn.command("DATA", "the DATA reply").await {
        Ok(r) if r.code == 354 => match conn.data(env.message).await {
            Ok(r) if r.is_positive() => RcptResult::Delivered {
                remote: Some(remote.to_string()),
                reply: crate::outcome::one_line(&r),
                relayed: !caps.dsn,
            },
            Ok(r) => RcptResult::from_failure(Failure::from_reply(&r, remote)),
            Err(e) => RcptResult::Deferred(client_failure(hop, &e)),
        },
        Ok(r) if r.is_positive() => RcptResult::Deferred(Failure::temporary(
            "4.5.0",
            format!(
                "{remote} answered DATA with {}",
                crate::outcome::one_line(&r)
            ),
        )),
        Ok(r) => RcptResult::from_failure(Failure::from_reply(&r, remote)),
        Err(e) => RcptResult::Deferred(client_failure(hop, &e)),
    };
    for i in accepted {
        results[i] = Some(outcome.clone());
    }
    Ok(fill(
        results,
        RcptResult::Deferred(Failure::temporary("4.0.0", "not attempted")),
    ))
}

/// No line breaks or brackets that could end the path or the command early.
fn safe_address(a: &str) -> bool {
    !a.chars().any(|c| c.is_control() || c == '<' || c == '>')
}

fn fill(results: Vec<Option<RcptResult>>, rest: RcptResult) -> Vec<RcptResult> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| rest.clone()))
        .collect()
}

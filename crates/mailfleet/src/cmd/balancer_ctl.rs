//! `mailfleet balancer ctl`: the balancer's runtime API from the command line (what HAProxy
//! admins do through its stats socket and Loadbalancer.org admins through the web UI).
//!
//! The API is plain HTTP/1.1 on an administrative address (usually loopback), so this speaks
//! it with a small client of its own over one TCP connection per command (`Connection: close`,
//! the answer read to its end, at most 16 MiB, within `--timeout`), rather than pulling in an
//! HTTP client library. `https://` is not supported: the API does not speak TLS.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most bytes of an answer read.
const MAX_ANSWER: u64 = 16 << 20;

/// What `mailfleet balancer` does besides running one.
#[derive(Subcommand)]
pub enum BalancerSub {
    /// Act on a running balancer through its runtime API ([admin] in its file).
    Ctl(CtlArgs),
}

#[derive(Args)]
pub struct CtlArgs {
    /// The runtime API, as `[admin] listen` gives it: `http://127.0.0.1:9900` (or `127.0.0.1:9900`).
    #[arg(long, value_name = "URL", env = "MAILFLEET_BALANCER_API")]
    api: String,
    /// A file holding `[admin] token` (surrounding white space ignored).
    #[arg(long, value_name = "FILE", env = "MAILFLEET_BALANCER_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// How long to wait for the balancer's answer.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(subcommand)]
    action: CtlAction,
}

#[derive(Subcommand)]
enum CtlAction {
    /// Services and servers: state, health, weight, connections.
    Status {
        /// Print the API's JSON (`GET /stats`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Only clients persistent to the server may go on using it; open connections go on.
    Drain { service: String, server: String },
    /// Back in service.
    Ready { service: String, server: String },
    /// Nothing new to the server; open connections go on.
    Maint { service: String, server: String },
    /// Set the server's weight (0 to 65535) until the file's weight for it changes.
    Weight {
        service: String,
        server: String,
        weight: u32,
    },
    /// Read the configuration file again (refused, and nothing changes, if it is wrong).
    Reload,
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    humantime_like(v).ok_or_else(|| format!("{v:?} is not a duration like \"10s\" or \"500ms\""))
}

/// `Ns`, `Nms` or `Nm`.
fn humantime_like(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        _ => None,
    }
}

/// Where the API is: host (as written, for the Host header) and a connectable `host:port`.
struct Api {
    authority: String,
}

impl Api {
    fn parse(url: &str) -> anyhow::Result<Api> {
        let rest = if let Some(r) = url.strip_prefix("http://") {
            r
        } else if url.starts_with("https://") {
            bail!("--api {url:?}: the runtime API speaks plain HTTP, not https");
        } else if url.contains("://") {
            bail!("--api {url:?}: only http:// URLs");
        } else {
            url
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') || authority.contains('@') {
            bail!("--api {url:?}: give the API's address, e.g. http://127.0.0.1:9900");
        }
        let has_port = match authority.rsplit_once(':') {
            Some((host, port)) => {
                // "[::1]:9900" has a port; "[::1]" or "::1" does not.
                !host.is_empty()
                    && (!host.contains(':') || host.ends_with(']'))
                    && port.parse::<u16>().is_ok()
            }
            None => false,
        };
        if !has_port {
            bail!("--api {url:?}: the address needs a port, e.g. http://127.0.0.1:9900");
        }
        Ok(Api {
            authority: authority.to_string(),
        })
    }
}

/// One answer of the API.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    /// The body as JSON, or why not.
    fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the balancer answered {} with a body that is not JSON: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
            )
        })
    }

    /// Ok for 2xx; else the API's `{"error": ...}` as the error.
    fn ok(self) -> anyhow::Result<Answer> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let why = self
            .json()
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_string());
        match self.status {
            401 => bail!("the balancer refused: {why} (give --token-file with [admin] token)"),
            _ => bail!("the balancer answered {}: {why}", self.status),
        }
    }
}

/// Sends one request and reads the whole answer.
async fn request(
    api: &Api,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<Answer> {
    let mut s = TcpStream::connect(&api.authority)
        .await
        .with_context(|| format!("cannot connect to the runtime API at {}", api.authority))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: mailfleet-ctl\r\n",
        api.authority
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if method != "GET" {
        req.push_str(&format!(
            "Content-Type: text/plain\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())
        .await
        .context("sending the request")?;
    let mut raw = Vec::new();
    (&mut s)
        .take(MAX_ANSWER + 1)
        .read_to_end(&mut raw)
        .await
        .context("reading the answer")?;
    if raw.len() as u64 > MAX_ANSWER {
        bail!("the answer is larger than {} MiB", MAX_ANSWER >> 20);
    }
    parse_answer(&raw)
}

/// Parses an HTTP/1.1 answer read to its end (Content-Length, chunked, or up to the close).
fn parse_answer(raw: &[u8]) -> anyhow::Result<Answer> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("the balancer's answer has no complete header"))?;
    let head = std::str::from_utf8(&raw[..end]).context("the answer's header is not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP answer: {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| anyhow!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            chunked = true;
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or_else(|| anyhow!("the answer ended {} bytes short", n - rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Answer { status, body })
}

fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("a chunked answer ended early"))?;
        let size_text = std::str::from_utf8(&rest[..eol]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| anyhow!("bad chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| anyhow!("a chunked answer ended early"))?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

fn read_token(path: &PathBuf) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--token-file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("--token-file {}: the file is empty", path.display());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(
            "--token-file {}: a token is one line of printable characters without spaces",
            path.display()
        );
    }
    Ok(token.to_string())
}

/// A path segment: the API's names are letters, digits, '-', '_' and '.', so anything else
/// cannot name a service or server.
fn segment(what: &str, v: &str) -> anyhow::Result<String> {
    if v.is_empty()
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        bail!("{v:?} is not a {what} name (letters, digits, '-', '_' and '.')");
    }
    Ok(v.to_string())
}

pub async fn run(args: CtlArgs) -> anyhow::Result<()> {
    let api = Api::parse(&args.api)?;
    let token = args.token_file.as_ref().map(read_token).transpose()?;
    let token = token.as_deref();
    let call = |method: &'static str, path: String, body: String| {
        let api = &api;
        async move {
            tokio::time::timeout(args.timeout, request(api, token, method, &path, &body))
                .await
                .map_err(|_| {
                    anyhow!(
                        "no answer from the runtime API at {} within {:?}",
                        api.authority,
                        args.timeout
                    )
                })?
        }
    };
    match args.action {
        CtlAction::Status { json } => {
            let stats = call("GET", "/stats".into(), String::new())
                .await?
                .ok()?
                .json()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{}", status_table(&stats));
            }
        }
        CtlAction::Drain { service, server } => {
            set_state(&call, &service, &server, "drain").await?;
        }
        CtlAction::Ready { service, server } => {
            set_state(&call, &service, &server, "ready").await?;
        }
        CtlAction::Maint { service, server } => {
            set_state(&call, &service, &server, "maint").await?;
        }
        CtlAction::Weight {
            service,
            server,
            weight,
        } => {
            let path = format!(
                "/service/{}/server/{}/weight",
                segment("service", &service)?,
                segment("server", &server)?
            );
            call("PUT", path, weight.to_string()).await?.ok()?;
            println!("{service}/{server}: weight {weight}");
        }
        CtlAction::Reload => {
            call("POST", "/reload".into(), String::new()).await?.ok()?;
            println!("configuration reloaded");
        }
    }
    Ok(())
}

async fn set_state<F, Fut>(call: &F, service: &str, server: &str, state: &str) -> anyhow::Result<()>
where
    F: Fn(&'static str, String, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Answer>>,
{
    let path = format!(
        "/service/{}/server/{}/{state}",
        segment("service", service)?,
        segment("server", server)?
    );
    call("POST", path, String::new()).await?.ok()?;
    println!("{service}/{server}: {state}");
    Ok(())
}

/// `GET /stats` as a table: one line per server, under a line per service.
fn status_table(stats: &Value) -> String {
    let text = |v: &Value, k: &str| match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    };
    let mut out = String::new();
    if let Some(role) = stats.get("pair_role").and_then(|r| r.as_str()) {
        out.push_str(&format!("pair role: {role}\n"));
    }
    let mut rows: Vec<[String; 8]> = vec![[
        "SERVICE".into(),
        "SERVER".into(),
        "ADDRESS".into(),
        "STATE".into(),
        "WEIGHT".into(),
        "ACTIVE".into(),
        "TOTAL".into(),
        "LAST CHECK".into(),
    ]];
    let empty = Vec::new();
    let services = stats
        .get("services")
        .and_then(|s| s.as_array())
        .unwrap_or(&empty);
    for svc in services {
        rows.push([
            text(svc, "name"),
            "*".into(),
            svc.get("listen")
                .and_then(|l| l.as_array())
                .map(|l| {
                    l.iter()
                        .filter_map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
            format!("{} {}", text(svc, "mode"), text(svc, "scheduler")),
            "-".into(),
            format!("{}/{}", text(svc, "active"), text(svc, "max_connections")),
            text(svc, "total"),
            format!(
                "denied {} full {} no-server {}",
                text(svc, "denied"),
                text(svc, "rejected_full"),
                text(svc, "no_server")
            ),
        ]);
        for s in svc
            .get("servers")
            .and_then(|s| s.as_array())
            .unwrap_or(&empty)
        {
            let weight = {
                let (w, base) = (text(s, "weight"), text(s, "base_weight"));
                if w == base {
                    w
                } else {
                    format!("{w} ({base})")
                }
            };
            let check = match s.get("check") {
                Some(c) if !c.is_null() => text(c, "last"),
                _ => "unchecked".into(),
            };
            rows.push([
                text(svc, "name"),
                text(s, "name"),
                text(s, "address"),
                text(s, "state"),
                weight,
                text(s, "active"),
                text(s, "total"),
                check,
            ]);
        }
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in &rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls() {
        for ok in [
            "http://127.0.0.1:9900",
            "http://127.0.0.1:9900/",
            "127.0.0.1:9900",
            "http://[::1]:9900",
            "http://lb1.example:9900",
        ] {
            assert!(Api::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://127.0.0.1:9900",
            "ftp://x:1",
            "http://127.0.0.1",
            "http://[::1]",
            "http://127.0.0.1:9900/stats",
            "http://u@127.0.0.1:9900",
            "",
        ] {
            assert!(Api::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_parsed() {
        let a =
            parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ok\":true}").unwrap();
        assert_eq!(
            (a.status, a.json().unwrap()["ok"].as_bool()),
            (200, Some(true))
        );
        let a = parse_answer(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"err\r\n10\r\nor\":\"no such x\"}\r\n0\r\n\r\n",
        )
        .unwrap();
        let e = a.ok().err().unwrap().to_string();
        assert_eq!(e, "the balancer answered 404: no such x");
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn names_must_be_names() {
        assert!(segment("server", "n1.dc-2_a").is_ok());
        for bad in ["", "a/b", "..%2f", "a b", "é"] {
            assert!(segment("server", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(humantime_like("10s"), Some(Duration::from_secs(10)));
        assert_eq!(humantime_like("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(humantime_like("2m"), Some(Duration::from_secs(120)));
        assert_eq!(humantime_like("s"), None);
        assert_eq!(humantime_like("5 parsecs"), None);
    }

    #[test]
    fn the_table_has_a_line_per_server() {
        let stats: Value = serde_json::json!({
            "pair_role": null,
            "services": [{
                "name": "imap", "mode": "tcp", "scheduler": "leastconn", "listen": ["127.0.0.1:143"],
                "active": 3, "total": 10, "denied": 0, "rejected_full": 0, "no_server": 1,
                "max_connections": 100,
                "servers": [
                    {"name": "n1", "address": "127.0.0.2:143", "state": "up", "weight": 50,
                     "base_weight": 100, "active": 2, "total": 7, "check": {"last": "ok"}},
                    {"name": "n2", "address": "mx.example:143 (127.0.0.3)", "state": "drain",
                     "weight": 100, "base_weight": 100, "active": 1, "total": 3, "check": null}
                ]
            }]
        });
        let t = status_table(&stats);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("SERVICE  SERVER"), "{t}");
        assert!(
            lines[1].contains("3/100") && lines[1].contains("no-server 1"),
            "{t}"
        );
        assert!(
            lines[2].contains("n1") && lines[2].contains("50 (100)") && lines[2].ends_with("ok"),
            "{t}"
        );
        assert!(
            lines[3].contains("drain") && lines[3].ends_with("unchecked"),
            "{t}"
        );
    }
}

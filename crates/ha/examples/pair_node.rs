//! A minimal pair member for the namespace failover test (and for trying the pair by hand).
//!
//! ```text
//! pair_node --name a --role active --listen 10.99.0.11:7400 --peer 10.99.0.12:7400 \
//!           [--interval 200ms] [--vip 10.99.0.100/24 [--vip fd00:99::100/64] --interface eth0] \
//!           [--serve 0.0.0.0:8025] [--serve [::]:8025] \
//!           [--key SECRET]
//! ```
//!
//! Prints one line per event on stdout: `role active`, `role passive`, `applied <state>`,
//! `stopped`. With `--serve`, answers every TCP connection with its name and closes it.
//! Its replicated state is a text that starts as `<name>-state`; a member that becomes
//! active appends `+<name>`, so a test sees whose state travelled where. SIGTERM or
//! Ctrl-C stops it gracefully (VIP released, peer told).

use std::io::Write;
use std::sync::{Arc, Mutex};

use mailfleet_ha::{PairSection, ReplicatedState, Role};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

struct TextState(Mutex<String>);

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

impl ReplicatedState for TextState {
    fn snapshot(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|s| s.clone().into_bytes())
            .unwrap_or_default()
    }
    fn apply(&self, snapshot: &[u8]) -> Result<(), String> {
        let text = String::from_utf8(snapshot.to_vec()).map_err(|e| e.to_string())?;
        say(&format!("applied {text}"));
        *self.0.lock().map_err(|e| e.to_string())? = text;
        Ok(())
    }
}

fn usage(message: &str) -> ! {
    eprintln!("pair_node: {message}");
    eprintln!(
        "usage: pair_node --name N --role active|passive --listen ADDR --peer ADDR \
         [--interval D] [--vip IP/PREFIX ...] [--interface DEV] [--serve ADDR ...] [--key SECRET]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let mut args = std::env::args().skip(1);
    let (mut name, mut role, mut listen, mut peer) = (None, None, None, None);
    let (mut interval, mut interface) = (None, None);
    let (mut vips, mut serve) = (Vec::new(), Vec::new());
    let mut key = None;
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--name" => name = Some(value),
            "--role" => role = Some(value),
            "--listen" => listen = Some(value),
            "--peer" => peer = Some(value),
            "--interval" => interval = Some(value),
            "--vip" => vips.push(mailfleet_ha::VipEntry::Address(value)),
            "--interface" => interface = Some(value),
            "--serve" => serve.push(value),
            "--key" => key = Some(value),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    let name = name.unwrap_or_else(|| usage("--name is required"));
    let role = match role.as_deref() {
        Some("active") => Role::Active,
        Some("passive") => Role::Passive,
        _ => usage("--role must be active or passive"),
    };
    let parse = |v: Option<String>, flag: &str| {
        v.unwrap_or_else(|| usage(&format!("{flag} is required")))
            .parse()
            .unwrap_or_else(|_| usage(&format!("{flag} is not an address")))
    };
    let section = PairSection {
        role,
        listen: parse(listen, "--listen"),
        peer: parse(peer, "--peer"),
        interval,
        vip: (!vips.is_empty()).then_some(mailfleet_ha::VipSetting::Many(vips)),
        interface,
        key,
    };

    let shutdown = CancellationToken::new();
    for addr in serve {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .unwrap_or_else(|e| usage(&format!("--serve {addr}: {e}")));
        let reply = format!("{name}\n");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
    }

    let state = Arc::new(TextState(Mutex::new(format!("{name}-state"))));
    let pair = match mailfleet_ha::start(section, state.clone(), shutdown.clone()).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pair_node: {e}");
            std::process::exit(1);
        }
    };
    let mut roles = pair.subscribe();
    let watcher = {
        let state = state.clone();
        let name = name.clone();
        tokio::spawn(async move {
            loop {
                let role = *roles.borrow_and_update();
                if role == Role::Active
                    && let Ok(mut s) = state.0.lock()
                {
                    s.push('+');
                    s.push_str(&name);
                }
                say(&format!("role {role}"));
                if roles.changed().await.is_err() {
                    break;
                }
            }
        })
    };

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .unwrap_or_else(|e| usage(&format!("cannot catch SIGTERM: {e}")));
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    shutdown.cancel();
    pair.stopped().await;
    let _ = watcher.await;
    say("stopped");
}

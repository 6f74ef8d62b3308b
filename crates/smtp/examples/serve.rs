//! Runs only the SMTP service of a node, for benchmarks and manual tests:
//!
//! `serve NODE.toml [KEY=VALUE]... [ADDRESS PASSWORD]...` opens the node's store and blobs, sets
//! each cluster setting KEY, creates each ADDRESS (and its domain) if missing, and serves SMTP
//! until Ctrl-C / SIGTERM. The real node
//! is `mailfleet node --config NODE.toml`; this example exists so the SMTP bench does not depend
//! on the rest of the node.

use std::sync::Arc;
use std::time::Duration;

use mailfleet_cluster::LiveSettings;
use mailfleet_smtp::{SmtpContext, SmtpServer};
use mailfleet_store::NewAccount;
use mailfleet_store::address::domain_of;
use mailfleet_store::password::hash_password;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        return Err("usage: serve NODE.toml [ADDRESS PASSWORD]...".into());
    };
    let config = mailfleet_config::NodeConfig::load(std::path::Path::new(path))?;
    let store = mailfleet_store::open(&config.store).await?;
    let blobs = mailfleet_store::open_node_blobs(
        &config.blobs_spec(),
        store.clone(),
        &config.server_id,
        config.blobs_inline_max(),
    )?;
    let (sets, accounts): (Vec<&String>, Vec<&String>) = args[1..]
        .iter()
        .partition(|a| a.contains('=') && !a.contains('@'));
    for kv in sets {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if let Some(Err(e)) = mailfleet_smtp::settings::validate(k, v) {
            return Err(e.into());
        }
        store.set_setting(k, v).await?;
    }
    for pair in accounts.chunks(2) {
        let &[address, password] = pair else {
            return Err("each ADDRESS needs a PASSWORD".into());
        };
        let domain = domain_of(address);
        if !store.domain_exists(domain).await? {
            store.add_domain(domain).await?;
        }
        if store.get_account(address).await?.is_none() {
            store
                .create_account(&NewAccount {
                    address: address.clone(),
                    password_hash: hash_password(password)?,
                    quota_bytes: 0,
                    shard: "default".into(),
                })
                .await?;
        }
    }
    let shutdown = CancellationToken::new();
    let settings =
        LiveSettings::start(store.clone(), Duration::from_secs(1), shutdown.clone()).await?;
    let ctx = SmtpContext {
        config: Arc::new(config),
        auth: Arc::new(mailfleet_auth::Authenticator::new(store.clone())),
        store,
        blobs,
        settings,
    };
    for (name, addr) in SmtpServer::start(ctx, shutdown.clone()).await? {
        println!("{name} {addr}");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

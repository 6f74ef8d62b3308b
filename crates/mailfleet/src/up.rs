//! `mailfleet up`: the newcomer's command. One node on 127.0.0.1 on the embedded SQLite store in a
//! data directory, with a demo domain and account made on first start.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use mailfleet_config::NodeConfig;
use mailfleet_store::{NewAccount, Store, password};
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Data directory (store, blobs, logs).
    #[arg(long, default_value = "./mailfleet-data")]
    pub data: PathBuf,
    /// Added to every standard port, so no root is needed.
    #[arg(long, default_value_t = 10000)]
    pub port_offset: u16,
}

pub const DEMO_DOMAIN: &str = "example.test";
pub const DEMO_ACCOUNT: &str = "demo@example.test";

/// Creates the demo domain and account, and makes the account postmaster, when the store has
/// no domain yet; returns the password.
async fn first_start(store: &dyn Store) -> anyhow::Result<Option<String>> {
    if !store.list_domains().await?.is_empty() {
        return Ok(None);
    }
    store.add_domain(DEMO_DOMAIN).await?;
    let pw = password::generate_password();
    store
        .create_account(&NewAccount {
            address: DEMO_ACCOUNT.into(),
            password_hash: password::hash_password(&pw)?,
            quota_bytes: 0,
            shard: "default".into(),
        })
        .await?;
    // Mail to postmaster (RFC 5321 §4.5.1) reaches someone from the first message on.
    store.set_setting("smtp.postmaster", DEMO_ACCOUNT).await?;
    Ok(Some(pw))
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create {}", args.data.display()))?;
    let data = args
        .data
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", args.data.display()))?;
    let store_url = format!("sqlite:{}", data.join("mailfleet.db").display());
    let config = Arc::new(NodeConfig {
        server_id: "up1".into(),
        hostname: "localhost".into(),
        store: store_url.clone(),
        backup_store: None,
        data_dir: data.clone(),
        blobs: None,
        blobs_inline_max: None,
        bind: std::net::IpAddr::from([127, 0, 0, 1]),
        port_offset: args.port_offset,
        // Clients connect directly; no balancer in front yet.
        trusted_proxies: Vec::new(),
        log_dir: None,
        tls: Default::default(),
        master: true,
    });
    let _guard = crate::node::init_node_logging(&config)?;
    let store = mailfleet_store::open(&store_url).await?;
    let created = first_start(store.as_ref()).await?;
    let shutdown = CancellationToken::new();
    crate::node::cancel_on_signal(shutdown.clone());
    let node = crate::node::start_node(config.clone(), store, shutdown.clone()).await?;

    println!("mailfleet is up (Ctrl-C stops it)");
    println!("  store:  {store_url}");
    println!("  data:   {}", data.display());
    for (service, addr) in &node.listeners {
        println!("  {service:<11} {addr}");
    }
    match created {
        Some(pw) => {
            println!("  account {DEMO_ACCOUNT} password {pw}");
            println!(
                "  (shown once; change it with: mailfleet account set {DEMO_ACCOUNT} --password-stdin --store {store_url})"
            );
        }
        None => println!("  existing store: accounts kept"),
    }
    println!("  admin:  export MAILFLEET_STORE={store_url}; mailfleet account list");
    shutdown.cancelled().await;
    node.stopped().await;
    println!("mailfleet stopped");
    Ok(())
}

//! `mailfleet`: one binary, clap subcommands dispatching to their own modules.

mod cmd;
mod error_text;
mod logging;
mod node;
mod node_drain;
mod up;

use clap::{Parser, Subcommand};

// mimalloc for every subcommand, measured against glibc's malloc in ARCHITECTURE.md
// ("Dependencies, and why").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "mailfleet",
    version,
    about = "Mail server, balancer, proxy and cluster in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything on this machine on loopback, on the embedded store (the newcomer's command).
    Up(up::UpArgs),
    /// Run one node from its configuration file (or, with `drain`, act on a running one).
    Node(node::NodeArgs),
    /// Check a node configuration file without starting anything.
    CheckConfig {
        /// The node's TOML file.
        file: std::path::PathBuf,
    },
    /// Run the load balancer from its configuration file (or, with `ctl`, act on a running one).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Balancer {
        #[arg(long, required = true)]
        config: Option<std::path::PathBuf>,
        /// Only check the file.
        #[arg(long)]
        check: bool,
        #[command(subcommand)]
        ctl: Option<cmd::balancer_ctl::BalancerSub>,
    },
    #[command(flatten)]
    Admin(cmd::AdminCommand),
}

/// The runtime a command runs on. A running balancer serves its clients on relay threads of its
/// own, each with a runtime and a poller (`mailfleet_balancer::start_relay_threads`), as many as
/// the machine has cores; the rest (health checks, the runtime API, reloads) runs on one thread.
fn runtime_for(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    if let Command::Balancer {
        config: Some(_),
        check: false,
        ctl: None,
    } = command
    {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        mailfleet_balancer::start_relay_threads(threads)?;
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    tokio::runtime::Runtime::new()
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match runtime_for(&cli.command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailfleet: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(args).await,
            Command::Node(args) => node::run(args).await,
            Command::CheckConfig { file } => {
                mailfleet_config::NodeConfig::load(&file)?;
                println!("{}: ok", file.display());
                Ok(())
            }
            Command::Balancer { config, check, ctl } => {
                if let Some(cmd::balancer_ctl::BalancerSub::Ctl(args)) = ctl {
                    return cmd::balancer_ctl::run(args).await;
                }
                let Some(config) = config else {
                    anyhow::bail!("mailfleet balancer needs --config FILE");
                };
                if check {
                    mailfleet_balancer::check_file_and_names(&config).await?;
                    println!("{}: ok", config.display());
                    return Ok(());
                }
                node::init_stderr_logging();
                // run_from_file watches SIGTERM and SIGINT itself: the first starts a soft stop
                // (open connections go on, up to stop_timeout), a second stops at once.
                let shutdown = tokio_util::sync::CancellationToken::new();
                mailfleet_balancer::run_from_file(config, shutdown).await?;
                Ok(())
            }
            Command::Admin(cmd) => cmd::run(cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailfleet: {}", error_text::error_text(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

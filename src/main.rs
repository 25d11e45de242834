//! The `raftsman` command: a control-plane replica (`server`), a local HA cluster (`up`) and the benchmark
//! (`bench`). The only place that uses anyhow and reads process-level settings.

mod apiserver;
mod cluster;
mod limits;
mod proto;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use cluster::config::ServerConfig;

#[derive(Parser)]
#[command(
    name = "raftsman",
    version,
    about = "A Kubernetes-style control plane with its own Raft-replicated store"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one control-plane replica.
    Server(ServerArgs),
}

#[derive(clap::Args)]
struct ServerArgs {
    /// This replica's name; must appear in --initial-cluster.
    #[arg(long)]
    name: String,
    /// Where this replica keeps its log, state and snapshots.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address for Raft traffic between replicas.
    #[arg(long, default_value = "127.0.0.1:2380")]
    peer_addr: SocketAddr,
    /// Address for the etcd v3 client API.
    #[arg(long, default_value = "127.0.0.1:2379")]
    client_addr: SocketAddr,
    /// NAME=HOST:PORT of every initial member (peer addresses); ignored once the data dir exists.
    #[arg(long, default_value = "")]
    initial_cluster: String,
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAFTSMAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        match cli.command {
            Cmd::Server(args) => {
                let config = ServerConfig {
                    name: args.name,
                    data_dir: args.data_dir,
                    peer_addr: args.peer_addr,
                    client_addr: args.client_addr,
                    initial_cluster: args.initial_cluster,
                }
                .validate()?;
                let listeners = cluster::server::Listeners::bind(&config).await?;
                cluster::server::run(config, listeners, shutdown_signal()).await?;
                Ok(())
            }
        }
    })
}

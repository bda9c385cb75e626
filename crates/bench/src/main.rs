//! berth-bench: runs berth and its peers on the same work in one run and
//! reports medians and ratios. Timing is never asserted anywhere; this
//! prints figures for docs/benchmarks.md.

mod build;
mod cri;
mod pull;
mod rootless;
mod run;
mod runtime;
mod sandboxed;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth-bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// `run --rm IMAGE true` by runtime class: builtin, runc, gVisor's
    /// runsc; on the bridge network and without one.
    Sandboxed {
        #[arg(short = 'n', long, default_value_t = 10)]
        runs: usize,
        /// The berth binary (default: next to this one).
        #[arg(long)]
        berth: Option<std::path::PathBuf>,
    },
    /// An ordinary user's `run --rm IMAGE true` and cold pull: berth
    /// against rootless podman, as the same user made for the run.
    Rootless {
        /// Runs of each run row (after one warm-up).
        #[arg(short = 'n', long, default_value_t = 20)]
        runs: usize,
        /// Cold pulls per tool.
        #[arg(long, default_value_t = 3)]
        pulls: usize,
        /// The berth binary (default: next to this one).
        #[arg(long)]
        berth: Option<std::path::PathBuf>,
    },
    /// `run`, and create + start + wait + delete, of one bundle: berth-runtime,
    /// runc, crun.
    Runtime {
        /// Runs per runtime (after one warm-up run each).
        #[arg(short = 'n', long, default_value_t = 100)]
        runs: usize,
        /// The berth-runtime binary (default: next to this one).
        #[arg(long)]
        berth: Option<std::path::PathBuf>,
    },
    /// Pull + unpack of a multi-layer image from a local registry: berth,
    /// podman, skopeo + umoci, ctr.
    Pull {
        /// Runs per tool, each from an empty store.
        #[arg(short = 'n', long, default_value_t = 3)]
        runs: usize,
        /// The berth binary (default: next to this one).
        #[arg(long)]
        berth: Option<std::path::PathBuf>,
    },
    /// run --rm IMAGE true: berth, podman, ctr; then N serving containers
    /// until all answer, berth against podman, with monitor memory.
    Run {
        #[arg(short = 'n', long, default_value_t = 20)]
        runs: usize,
        /// Serving containers to start (0: skip).
        #[arg(long, default_value_t = 105)]
        serve: usize,
        #[arg(long)]
        berth: Option<std::path::PathBuf>,
    },
    /// Kubernetes CRI runtimes over their sockets: containerd's CRI plugin
    /// (started by the benchmark), berthd or any other: pod lifecycle
    /// steps, N serving pods until the first and last answer, memory.
    Cri(cri::Opts),
    /// Image builds: berth build against buildah bud --layers, cold, with
    /// nothing changed, and after a one-line change.
    Build {
        #[arg(short = 'n', long, default_value_t = 5)]
        runs: usize,
        #[arg(long)]
        berth: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Runtime { runs, berth } => runtime::run(runs, berth),
        Cmd::Pull { runs, berth } => pull::run(runs, berth),
        Cmd::Run { runs, serve, berth } => run::run(runs, serve, berth),
        Cmd::Cri(opts) => cri::run(opts),
        Cmd::Build { runs, berth } => build::run(runs, berth),
        Cmd::Rootless { runs, pulls, berth } => rootless::run(runs, pulls, berth),
        Cmd::Sandboxed { runs, berth } => sandboxed::run(runs, berth),
    }
}

/// The binary the command line names, else `name` beside this one.
pub(crate) fn binary(
    given: Option<std::path::PathBuf>,
    name: &str,
) -> anyhow::Result<std::path::PathBuf> {
    match given {
        Some(b) => Ok(b),
        None => Ok(std::env::current_exe()?.with_file_name(name)),
    }
}

/// Fails, naming the first of `tools` that is not on PATH.
pub(crate) fn require(tools: &[&str]) -> anyhow::Result<()> {
    use anyhow::Context;
    for tool in tools {
        pull::sh(std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]))
            .with_context(|| format!("{tool} is needed"))?;
    }
    Ok(())
}

//! `berth completion SHELL` and the hidden `berth generate-man DIR`: shell
//! completion scripts and man pages made from the same clap definitions
//! that parse the command line, so neither can drift from it.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

/// Prints the completion script for `shell` on stdout.
pub fn completion(shell: clap_complete::Shell) -> Result<()> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut crate::Cli::command(), "berth", &mut out);
    Ok(())
}

/// Writes berth.1 and one page per visible command and subcommand
/// (berth-run.1, berth-container-ls.1, ...) into `dir`.
pub fn man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    clap_mangen::generate_to(crate::Cli::command(), dir)
        .with_context(|| format!("write man pages to {}", dir.display()))
}

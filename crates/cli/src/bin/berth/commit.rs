//! `berth commit` and `berth diff`: flags in, an image id or change lines
//! out; the engine reads the container's snapshot and makes the image.

use anyhow::Result;
use berth_engine::Engine;
use berth_engine::commit::CommitOptions;
use berth_image::export::Compression;

#[derive(clap::Args)]
pub struct CommitArgs {
    /// The image's author.
    #[arg(short, long)]
    author: Option<String>,
    /// A comment for the image's history entry.
    #[arg(short, long)]
    message: Option<String>,
    /// A Dockerfile instruction for the image's config (CMD, ENTRYPOINT,
    /// ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable.
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Pause a running container while its changes are read.
    #[arg(short, long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pause: bool,
    /// gzip or zstd, for the new layer.
    #[arg(long, default_value = "gzip")]
    compression: String,
    /// The container, by name or ID.
    container: String,
    /// REPOSITORY[:TAG] for the image (a short name is localhost/NAME).
    name: Option<String>,
}

pub fn commit(e: &Engine, a: CommitArgs) -> Result<()> {
    let names = a
        .name
        .as_deref()
        .map(berth_image::archive::local_name)
        .transpose()?
        .into_iter()
        .collect();
    let opts = CommitOptions {
        author: a.author,
        message: a.message,
        changes: a.change,
        pause: a.pause,
        names,
        compression: Compression::parse(&a.compression)?,
    };
    let rec = e.commit(&a.container, &opts)?;
    println!("{}", rec.id.hex());
    Ok(())
}

pub fn diff(e: &Engine, container: &str) -> Result<()> {
    for c in e.diff(container)? {
        println!("{c}");
    }
    Ok(())
}

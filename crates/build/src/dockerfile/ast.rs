//! What a Dockerfile says, as parsed: stages of instructions with where
//! each was written. Words are kept as written (quotes, `$VAR`, escapes):
//! a word's value depends on the ARG and ENV in force where it is used,
//! so the builder expands it then (words.rs).

/// Where something was written: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.col)
    }
}

/// A whole Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// `# syntax=` (recorded; berth has one frontend).
    pub syntax: Option<String>,
    /// `# escape=` (`\` by default, or `` ` ``).
    pub escape: char,
    /// ARGs before the first FROM: usable in FROM lines, and in a stage
    /// that declares them again without a value.
    pub global_args: Vec<ArgDecl>,
    pub stages: Vec<Stage>,
}

/// `FROM base [AS name]` and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Its place among the stages, from 0 (`COPY --from=0`).
    pub index: usize,
    /// The `AS` name, lowercased as BuildKit compares them.
    pub name: Option<String>,
    /// The base as written: an image reference, `scratch`, or an earlier
    /// stage's name, possibly with `$ARG`s of the global ARGs.
    pub base: String,
    /// `FROM --platform=...` as written.
    pub platform: Option<String>,
    pub pos: Pos,
    /// The FROM line as written, for history and errors.
    pub original: String,
    pub instructions: Vec<Instruction>,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    pub pos: Pos,
    /// The instruction as written, continuation lines joined (what
    /// history's `created_by` and the progress output show).
    pub original: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Arg(Vec<ArgDecl>),
    /// `ENV k=v ...` (or the old `ENV k v`): keys, and raw value words.
    Env(Vec<(String, String)>),
    /// `LABEL k=v ...`: raw key and value words.
    Label(Vec<(String, String)>),
    Run(Run),
    /// COPY and ADD.
    Copy(Copy),
    /// Raw word.
    Workdir(String),
    /// Raw word: `user[:group]`.
    User(String),
    /// Raw words, `80`, `53/udp`, `$PORT`.
    Expose(Vec<String>),
    /// Raw words (JSON form already decoded into words).
    Volume(Vec<String>),
    Entrypoint(Command),
    Cmd(Command),
    Healthcheck(Health),
    /// Raw word.
    StopSignal(String),
    /// JSON array only.
    Shell(Vec<String>),
    /// The trigger instruction, kept as written: it runs in a build that
    /// uses this image as its base, parsed then.
    Onbuild(String),
    /// Deprecated; becomes the image's author.
    Maintainer(String),
}

/// `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgDecl {
    pub name: String,
    /// Raw word.
    pub default: Option<String>,
}

/// CMD, ENTRYPOINT, RUN and HEALTHCHECK CMD take a JSON array (exec form)
/// or anything else (shell form, run by the stage's SHELL).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

/// `<<EOF` ... `EOF` after RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct Heredoc {
    /// The delimiter word without quotes or `-`.
    pub name: String,
    /// The lines between, each ending in `\n` (leading tabs removed for
    /// `<<-`).
    pub content: String,
    /// An unquoted delimiter: `$VAR`s in the content are expanded (for
    /// RUN by the shell that runs it; for COPY by the builder).
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub command: Command,
    pub mounts: Vec<RunMount>,
    /// `--network=default|none|host`.
    pub network: Option<String>,
    /// `--security=insecure|sandbox`.
    pub security: Option<String>,
    /// Heredocs in order of their `<<` in the command line.
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// `RUN --mount=type=...,k=v,...`: each option as written (raw words).
#[derive(Debug, Clone, PartialEq)]
pub struct RunMount {
    pub kind: MountType,
    /// `target`/`dst`/`destination`.
    pub target: Option<String>,
    /// `source`/`src`.
    pub source: Option<String>,
    /// `from`: a stage or an image.
    pub from: Option<String>,
    pub id: Option<String>,
    /// `ro`/`readonly` (bind mounts are read-only by default, `rw` makes
    /// them writable; cache mounts the other way).
    pub readonly: Option<bool>,
    /// `sharing=shared|private|locked` (cache).
    pub sharing: Option<String>,
    /// `mode`, `uid`, `gid` (cache, secret): octal mode, numbers.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `required` (secret, ssh).
    pub required: bool,
    /// `size` (tmpfs), bytes.
    pub size: Option<u64>,
    /// `env` (secret): expose the secret as this variable.
    pub env: Option<String>,
}

/// COPY or ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct Copy {
    /// ADD: URLs fetched, local tar archives extracted.
    pub add: bool,
    /// Raw words (JSON form decoded into words). A source that names a
    /// heredoc (`<<EOF`) is listed in `heredocs` instead.
    pub sources: Vec<String>,
    /// Raw word.
    pub dest: String,
    /// `--from=stage|index|image`.
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=0755` (octal, as written).
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude=pattern` (repeatable).
    pub excludes: Vec<String>,
    /// ADD `--checksum=sha256:...`.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// Files given inline (`COPY <<EOF /dest`).
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// `HEALTHCHECK NONE`: the base image's check is off.
    None,
    Check {
        test: Command,
        /// Durations as written (`30s`, `1m30s`).
        interval: Option<String>,
        timeout: Option<String>,
        start_period: Option<String>,
        start_interval: Option<String>,
        retries: Option<u32>,
    },
}

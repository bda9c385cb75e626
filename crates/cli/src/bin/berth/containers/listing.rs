//! How records are shown: `ps`'s table and JSON, `inspect`'s JSON, and the
//! -q / json / table choice every `ls` shares.

use anyhow::Result;
use berth_engine::Engine;
use berth_engine::filters::ContainerFilter;
use berth_engine::model::{Container, Status};
use berth_engine::usage::ContainerSize;
use berth_template::Options;

use crate::format::{Format, print_inspect, print_rows};
use crate::human::{ago, docker_size, docker_time, since, table};

/// The STATUS column: "Up 3 minutes (healthy)", "Exited (0) 2 hours ago".
fn status_text(e: &Engine, c: &Container) -> String {
    match c.state.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let up = format!("Up {}", since(c.state.started_at.as_deref()));
            match e.health(c).map(|h| h.status) {
                Some(s) if s == "starting" => format!("{up} (health: starting)"),
                Some(s) => format!("{up} ({s})"),
                None => up,
            }
        }
        Status::Paused => format!("Up {} (paused)", since(c.state.started_at.as_deref())),
        Status::Exited => match c.state.exit_code {
            Some(code) => format!("Exited ({code}) {}", ago(c.state.finished_at.as_deref())),
            None => format!("Exited (unknown) {}", ago(c.state.finished_at.as_deref())),
        },
    }
}

/// The PORTS column: HOST_IP:HOST_PORT->PORT/PROTO, comma-separated.
fn ports_text(c: &Container) -> String {
    c.config
        .ports
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                p.host_port,
                p.container_port,
                p.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ps`'s flags (and `container ls`'s, the same command).
#[derive(clap::Args)]
pub struct PsFlags {
    /// Also stopped ones.
    #[arg(short, long)]
    all: bool,
    /// Only IDs.
    #[arg(short, long)]
    quiet: bool,
    /// table, json, or a Go template: '{{.ID}} {{.Names}}',
    /// 'table {{.Names}}\t{{.Status}}'.
    #[arg(long, default_value = "table")]
    format: String,
    /// Show whole IDs and commands.
    #[arg(long)]
    no_trunc: bool,
    /// KEY=VALUE: name, label, status, ancestor (the image or one built
    /// on it), id, exited (repeatable: different keys must all match, the
    /// same key's values are alternatives).
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Show each container's size: its writable layer's, and with its
    /// image's under it (virtual). A template with `.Size` measures too.
    #[arg(short, long)]
    size: bool,
}

/// `ps`: running containers (all with -a, or when filtering on state),
/// those the filters match, as IDs, a table, JSON or a template's rows.
pub fn ps(ctx: &crate::Ctx, e: &Engine, a: &PsFlags) -> Result<()> {
    let mut filter = ContainerFilter::parse(&a.filter)?;
    filter.resolve_ancestors(&e.images, &ctx.conf)?;
    // Parsed before any listing, so a bad template fails the same with
    // or without containers.
    let format = Format::parse(&a.format)?;
    let all = a.all || filter.wants_stopped();
    let list: Vec<Container> = e
        .containers()?
        .into_iter()
        .filter(|c| all || matches!(c.state.status, Status::Running | Status::Paused))
        .filter(|c| filter.matches(c))
        .collect();
    if a.quiet {
        for c in &list {
            println!("{}", id_text(c, a.no_trunc));
        }
        return Ok(());
    }
    // Measuring walks each writable layer: only when asked for, by -s or,
    // as docker decides it, by a template that reads .Size.
    let measure = a.size || matches!(format, Format::Template(_)) && a.format.contains(".Size");
    let sizes = |c: &Container| -> Result<Option<ContainerSize>> {
        Ok(if measure {
            Some(e.container_size(c)?)
        } else {
            None
        })
    };
    match format {
        Format::Json => {
            let mut v = Vec::new();
            for c in &list {
                v.push(ps_json(e, c, sizes(c)?));
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            let mut rows = Vec::new();
            for c in &list {
                rows.push((c, sizes(c)?));
            }
            ps_table(e, &rows, a.no_trunc);
        }
        Format::Template(t) => {
            let mut rows = Vec::new();
            for c in &list {
                rows.push(ps_row(e, c, a.no_trunc, sizes(c)?));
            }
            print_rows(&t, &rows, &PS_OPTIONS)?;
        }
    }
    Ok(())
}

/// The SIZE column as docker writes it: "12B (virtual 4.27MB)".
fn size_text(s: &ContainerSize) -> String {
    format!(
        "{} (virtual {})",
        docker_size(s.rw_size),
        docker_size(s.root_fs_size)
    )
}

fn id_text(c: &Container, no_trunc: bool) -> String {
    if no_trunc {
        c.id.clone()
    } else {
        berth_engine::ids::short(&c.id).to_string()
    }
}

/// The COMMAND column: the command line, cut to 20 characters unless
/// --no-trunc.
fn command_text(c: &Container, no_trunc: bool) -> String {
    let mut cmd = c.command.join(" ");
    if !no_trunc && cmd.chars().count() > 20 {
        cmd = cmd.chars().take(19).collect();
        cmd.push('…');
    }
    cmd
}

/// docker's table; with sizes measured, its SIZE column last.
fn ps_table(e: &Engine, list: &[(&Container, Option<ContainerSize>)], no_trunc: bool) {
    let mut header = vec![
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    let sized = list.iter().any(|(_, s)| s.is_some());
    if sized {
        header.push("SIZE");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|(c, size)| {
            let mut row = vec![
                id_text(c, no_trunc),
                c.config.image.clone(),
                command_text(c, no_trunc),
                ago(Some(&c.created)),
                status_text(e, c),
                ports_text(c),
                c.name.clone(),
            ];
            row.extend(size.as_ref().map(size_text));
            row
        })
        .collect();
    table(&header, &rows);
}

/// `ps`'s template fields: docker's names (ContainerContext), with the
/// values docker's table shows. Labels are a map (podman's shape), so
/// `{{index .Labels "k"}}` and docker's `{{.Label "k"}}` both read them.
/// Size is there when it was measured (docker's rule: a template that
/// reads it, or -s); without, `.Size` is an unknown field, never a made-up
/// zero.
fn ps_row(
    e: &Engine,
    c: &Container,
    no_trunc: bool,
    size: Option<ContainerSize>,
) -> serde_json::Value {
    let labels: std::collections::BTreeMap<_, _> = c.config.labels.iter().cloned().collect();
    let mut row = serde_json::json!({
        "ID": id_text(c, no_trunc),
        "Image": c.config.image,
        "Command": format!("\"{}\"", command_text(c, no_trunc)),
        "CreatedAt": docker_time(&c.created),
        "RunningFor": ago(Some(&c.created)),
        "Status": status_text(e, c),
        "State": c.state.status.name(),
        "Ports": ports_text(c),
        "Names": c.name,
        "Labels": labels,
        "Mounts": c.config.volumes.iter().map(|v| v.source.as_str()).collect::<Vec<_>>().join(","),
        "Networks": c.networks.iter().map(|n| n.network.as_str()).collect::<Vec<_>>().join(","),
        "Pod": c.config.pod.clone().unwrap_or_default(),
        "ExitCode": c.state.exit_code,
    });
    if let Some(s) = size {
        row["Size"] = serde_json::Value::String(size_text(&s));
    }
    row
}

/// docker's `{{.Label "key"}}`: the value of one label, "" without it.
fn label_method(
    row: &serde_json::Value,
    args: &[serde_json::Value],
) -> Result<serde_json::Value, String> {
    let [serde_json::Value::String(key)] = args else {
        return Err("Label takes one string: the label's key".into());
    };
    Ok(row["Labels"]
        .get(key)
        .cloned()
        .unwrap_or_else(|| serde_json::Value::String(String::new())))
}

/// docker ps's column names where they are not the field's name.
const PS_OPTIONS: Options = Options {
    methods: &[("Label", label_method)],
    headers: &[("ID", "CONTAINER ID"), ("RunningFor", "CREATED")],
};

/// podman's JSON; with sizes measured, its `Size` object (rwSize,
/// rootFsSize, in bytes).
fn ps_json(e: &Engine, c: &Container, size: Option<ContainerSize>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "Id": c.id,
        "Names": [c.name],
        "Image": c.config.image,
        "ImageID": c.image_id,
        "Command": c.command,
        "Created": c.created,
        "State": c.state.status.name(),
        "Status": status_text(e, c),
        "ExitCode": c.state.exit_code,
        "Pid": c.state.pid,
        "Ports": c.config.ports,
        "Networks": c.networks.iter().map(|n| n.network.clone()).collect::<Vec<_>>(),
        "Pod": c.config.pod,
        "Labels": c.config.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
    });
    if let Some(s) = size {
        v["Size"] = serde_json::json!(s);
    }
    v
}

/// `inspect`: the records as a JSON array, or a template's output for
/// each (`-f`). Each name is looked up as a container, then as an image,
/// as docker does.
pub fn inspect(ctx: &crate::Ctx, e: &Engine, names: &[String], format: Option<&str>) -> Result<()> {
    let mut out = Vec::new();
    super::batch::each(names, |c| {
        match e.container(c) {
            Ok(found) => out.push(e.inspect(&found)),
            Err(berth_engine::Error::NotFound(_)) => {
                let store = ctx.store()?;
                let rec =
                    berth_image::images::resolve(&store, c, &ctx.conf).map_err(
                        |err| match err {
                            berth_image::Error::NotFound(_) => {
                                anyhow::anyhow!(
                                    "no such object: {c:?} (neither a container nor an image)"
                                )
                            }
                            other => other.into(),
                        },
                    )?;
                out.push(crate::inspect(&store, &rec)?);
            }
            Err(err) => return Err(err.into()),
        }
        Ok(())
    })?;
    print_inspect(format, &out)
}

/// How an `ls` shows its records under a template: each record as a row
/// of docker's field names, and the header words of its columns.
pub struct Rows<'a, T> {
    pub row: &'a dyn Fn(&T) -> serde_json::Value,
    pub headers: &'a [(&'a str, &'a str)],
}

/// `ls` output as every kind has it: names only with -q, the records as
/// JSON with --format json, a template's rows, else `table`.
pub fn ls<T: serde::Serialize>(
    items: &[T],
    quiet: bool,
    format: &str,
    name: impl Fn(&T) -> &String,
    rows: Rows<T>,
    table: impl FnOnce(&[T]),
) -> Result<()> {
    let format = Format::parse(format)?;
    if quiet {
        for i in items {
            println!("{}", name(i));
        }
        return Ok(());
    }
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(items)?),
        Format::Table => table(items),
        Format::Template(t) => {
            let values: Vec<serde_json::Value> = items.iter().map(rows.row).collect();
            let opts = Options {
                methods: &[],
                headers: rows.headers,
            };
            print_rows(&t, &values, &opts)?;
        }
    }
    Ok(())
}

/// Labels as a map: templates index them (`{{index .Labels "k"}}`).
pub fn label_map(labels: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

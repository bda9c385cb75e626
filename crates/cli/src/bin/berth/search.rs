//! `berth search`: podman's columns, JSON and templates over what
//! berth-image's search found in registries' catalogs.

use anyhow::Result;
use berth_image::search::{self, Found, SearchOptions, Tags};
use serde_json::{Value, json};

use crate::format::{Format, print_rows};
use crate::human::table;

#[derive(clap::Args)]
pub struct Args {
    /// What to look for: HOST[:PORT]/TERM searches that registry's
    /// catalog (HOST/ lists all of it); a TERM alone, each
    /// unqualified-search registry of registries.conf. With --list-tags,
    /// the repository whose tags to list.
    term: String,
    /// Most results per registry (default 25).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    limit: usize,
    /// List the tags of the repository TERM names.
    #[arg(long)]
    list_tags: bool,
    /// table, json, or a Go template: '{{.Name}}' ('{{.Name}}:{{.Tag}}'
    /// with --list-tags).
    #[arg(long, default_value = "table")]
    format: String,
    #[command(flatten)]
    net: crate::Net,
}

pub fn run(ctx: &crate::Ctx, a: Args) -> Result<()> {
    // Parsed first: a bad template fails before any registry is asked.
    let format = Format::parse(&a.format)?;
    let opts = SearchOptions {
        transport: ctx.transport(&a.net)?,
        registries: ctx.conf.clone(),
        limit: a.limit,
    };
    let rt = crate::runtime()?;
    if a.list_tags {
        let out = rt.block_on(search::list_tags(&a.term, &opts))?;
        warn(&out.failures);
        print_tags(&out.results, format)
    } else {
        let out = rt.block_on(search::search(&a.term, &opts))?;
        warn(&out.failures);
        print_found(&out.results, format)
    }
}

/// Registries that failed while others answered.
fn warn(failures: &[berth_image::Error]) {
    for f in failures {
        eprintln!("Warning: {f}");
    }
}

/// podman's fields for a found repository; a catalog has only names, so
/// the others are podman's empty values.
fn found_row(f: &Found) -> Value {
    json!({
        "Index": f.registry,
        "Name": f.name,
        "Description": "",
        "Stars": 0,
        "Official": "",
        "Automated": "",
        "Tag": "",
    })
}

fn print_found(found: &[Found], format: Format) -> Result<()> {
    let rows: Vec<Value> = found.iter().map(found_row).collect();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Template(t) => print_rows(&t, &rows, &berth_template::Options::default())?,
        Format::Table => {
            let cells: Vec<Vec<String>> = found
                .iter()
                .map(|f| vec![f.name.clone(), String::new()])
                .collect();
            table(&["NAME", "DESCRIPTION"], &cells);
        }
    }
    Ok(())
}

/// One row per tag (NAME TAG, as podman's table); JSON keeps each
/// repository's tags together, as podman's does.
fn print_tags(list: &[Tags], format: Format) -> Result<()> {
    if let Format::Json = format {
        let v: Vec<Value> = list
            .iter()
            .map(|t| json!({"Name": t.name, "Tags": t.tags}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows: Vec<Value> = list
        .iter()
        .flat_map(|t| t.tags.iter().map(|tag| json!({"Name": t.name, "Tag": tag})))
        .collect();
    match format {
        Format::Template(t) => print_rows(&t, &rows, &berth_template::Options::default())?,
        _ => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r["Name"].as_str().unwrap_or_default().to_string(),
                        r["Tag"].as_str().unwrap_or_default().to_string(),
                    ]
                })
                .collect();
            table(&["NAME", "TAG"], &cells);
        }
    }
    Ok(())
}

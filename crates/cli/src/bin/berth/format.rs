//! `--format` as docker and podman take it: the words `table` (the
//! command's own table) and `json`, or a Go template run over each row
//! (berth-template), with `table ` before it for headers and columns.

use anyhow::Result;
use berth_template::{Options, Template};
use serde_json::Value;

pub enum Format {
    /// The command's own table.
    Table,
    Json,
    Template(Template),
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        Ok(match s {
            "table" => Format::Table,
            "json" => Format::Json,
            _ => Format::Template(Template::parse(s)?),
        })
    }
}

/// Prints each row through the template (the header first for `table`).
pub fn print_rows(t: &Template, rows: &[Value], opts: &Options) -> Result<()> {
    print!("{}", t.render(rows, opts)?);
    Ok(())
}

/// `inspect -f`: the template once per record, each on its own line, as
/// docker prints them; without a format (or with `json`), the JSON array.
pub fn print_inspect(format: Option<&str>, records: &[Value]) -> Result<()> {
    match format {
        None | Some("json") => println!("{}", serde_json::to_string_pretty(records)?),
        Some(f) => print_rows(&Template::parse(f)?, records, &Options::default())?,
    }
    Ok(())
}

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

/// `inspect -f`: the template once per record, each followed by a
/// newline even when it ends in one (`{{range .Config.Env}}{{println
/// .}}{{end}}` ends in a blank line in docker and podman too); without a
/// format (or with `json`), the JSON array.
pub fn print_inspect(format: Option<&str>, records: &[Value]) -> Result<()> {
    let t = match format {
        None | Some("json") => {
            println!("{}", serde_json::to_string_pretty(records)?);
            return Ok(());
        }
        Some(f) => Template::parse(f)?,
    };
    if t.is_table() {
        return print_rows(&t, records, &Options::default());
    }
    for r in records {
        println!("{}", t.execute(r, &Options::default())?);
    }
    Ok(())
}

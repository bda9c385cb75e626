//! `berth events`: the lifecycle events of every berth process and
//! container monitor, past ones from `--since`, then as they happen until
//! `--until` (or forever).

use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use berth_base::events::Event;
use berth_engine::Engine;

#[derive(clap::Args)]
pub struct Args {
    /// Show events from this time on: RFC 3339, or a duration ago (10m).
    #[arg(long)]
    since: Option<String>,
    /// Stop at this time (RFC 3339, or a duration ago; `0s` is now).
    #[arg(long)]
    until: Option<String>,
    /// type=, event=, container=, pod=, image=, volume=, network=
    /// (repeat a key for any of its values).
    #[arg(short, long)]
    filter: Vec<String>,
    /// text (docker's lines), json (one object per line), or a Go
    /// template: '{{.Type}} {{.Action}} {{.Actor.Attributes.name}}'.
    #[arg(long, default_value = "text")]
    format: String,
}

/// A time as --since/--until take it.
pub fn parse_time(flag: &str, s: &str) -> Result<SystemTime> {
    humantime::parse_rfc3339_weak(s)
        .or_else(|_| humantime::parse_duration(s).map(|d| SystemTime::now() - d))
        .with_context(|| format!("{flag} {s}: a time (RFC 3339) or a duration (10m)"))
}

struct Filters(Vec<(String, String)>);

impl Filters {
    fn parse(raw: &[String]) -> Result<Filters> {
        let mut v = Vec::new();
        for f in raw {
            let Some((k, val)) = f.split_once('=') else {
                bail!("--filter {f}: expected KEY=VALUE");
            };
            if !matches!(
                k,
                "type" | "event" | "container" | "pod" | "image" | "volume" | "network"
            ) {
                bail!("--filter {f}: unknown key {k:?}");
            }
            v.push((k.to_string(), val.to_string()));
        }
        Ok(Filters(v))
    }

    /// Every key given matches one of its values.
    fn matches(&self, e: &Event) -> bool {
        let keys: std::collections::BTreeSet<&str> =
            self.0.iter().map(|(k, _)| k.as_str()).collect();
        keys.into_iter().all(|k| {
            self.0.iter().filter(|(x, _)| x == k).any(|(_, v)| {
                let name = e.actor.attributes.get("name").map(String::as_str);
                let named = |kind: &str| {
                    e.kind == kind
                        && (e.actor.id.starts_with(v.as_str()) || name == Some(v.as_str()))
                };
                match k {
                    "type" => e.kind == *v,
                    "event" => e.action == *v,
                    "image" => e.actor.attributes.get("image") == Some(v),
                    kind => named(kind),
                }
            })
        })
    }
}

/// How each event prints.
enum Output {
    Text,
    Json,
    Template(berth_template::Template),
}

/// An event under docker's template names (its events.Message): the JSON
/// shape, with Scope, Time and TimeNano capitalized, and the older
/// Status/ID/From fields docker still fills.
fn event_row(ev: &Event) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(ev)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("Scope".into(), ev.scope.clone().into());
        o.insert("Time".into(), ev.time.into());
        o.insert("TimeNano".into(), ev.time_nano.into());
        o.insert("Status".into(), ev.action.clone().into());
        o.insert("ID".into(), ev.actor.id.clone().into());
        let from = ev
            .actor
            .attributes
            .get("image")
            .cloned()
            .unwrap_or_default();
        o.insert("From".into(), from.into());
    }
    Ok(v)
}

pub fn run(e: &Engine, a: Args) -> Result<()> {
    let filters = Filters::parse(&a.filter)?;
    // Parsed before waiting for events, so a bad template fails at once.
    let output = match a.format.as_str() {
        "text" => Output::Text,
        "json" => Output::Json,
        t => Output::Template(berth_template::Template::parse(t)?),
    };
    let since = a
        .since
        .as_deref()
        .map(|s| parse_time("--since", s))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|s| parse_time("--until", s))
        .transpose()?;
    let print = |ev: &Event| -> Result<()> {
        if !filters.matches(ev) {
            return Ok(());
        }
        match &output {
            Output::Json => println!("{}", serde_json::to_string(ev)?),
            Output::Text => println!("{}", ev.text()),
            Output::Template(t) => {
                let opts = berth_template::Options::default();
                crate::format::print_rows(t, &[event_row(ev)?], &opts)?;
            }
        }
        Ok(())
    };
    // Subscribed first, so nothing between the past and the live falls
    // through; what the past already showed is skipped by time.
    let mut live = e.subscribe();
    let mut last = 0;
    if since.is_some() {
        for ev in e.events_since(since) {
            if until.is_some_and(|u| ev.at() > u) {
                return Ok(());
            }
            last = ev.time_nano;
            print(&ev)?;
        }
    }
    let deadline =
        until.map(|u| Instant::now() + u.duration_since(SystemTime::now()).unwrap_or_default());
    while let Some(ev) = live.next_before(deadline) {
        if ev.time_nano <= last {
            continue;
        }
        if until.is_some_and(|u| ev.at() > u) {
            break;
        }
        print(&ev)?;
    }
    Ok(())
}

//! Which stages a build needs, in an order that builds each after the
//! stages it reads (its base, `COPY --from`, `RUN --mount=from=`): only
//! those the target reaches, a cycle an error naming the stages in it.

use crate::dockerfile::{Dockerfile, Kind, Pos};

/// What a stage refers to by a name: another stage, or an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Stage(usize),
    Image(String),
    Scratch,
}

/// The stage `name` names (an `AS` name, case-insensitive, or an index)
/// among those before `before`; None when it is an image's name.
pub fn stage_named(df: &Dockerfile, name: &str, before: usize) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    if let Ok(i) = lower.parse::<usize>() {
        return (i < before).then_some(i);
    }
    df.stages[..before.min(df.stages.len())]
        .iter()
        .rev()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
        .map(|s| s.index)
}

/// A reference as written (`FROM x`, `--from=x`), expanded by the caller.
pub fn resolve(df: &Dockerfile, name: &str, within: usize) -> Ref {
    if name.eq_ignore_ascii_case("scratch") {
        return Ref::Scratch;
    }
    match stage_named(df, name, within) {
        Some(i) => Ref::Stage(i),
        None => Ref::Image(name.to_string()),
    }
}

/// A problem with the plan, and where.
#[derive(Debug)]
pub struct PlanError {
    pub pos: Pos,
    pub message: String,
}

/// The stages a build needs, and what each reads.
#[derive(Debug)]
pub struct Plan {
    /// Each after the stages it reads; the target last.
    pub order: Vec<usize>,
    /// For every stage of the file, the stages it reads.
    pub deps: Vec<Vec<usize>>,
}

/// The stages to build for `target` (the last stage by default), each
/// after those it reads. `expand` gives a reference's value (FROM words
/// and --from flags may hold ARGs).
pub fn order(
    df: &Dockerfile,
    target: Option<&str>,
    expand: &dyn Fn(usize, &str) -> Result<String, PlanError>,
) -> Result<Plan, PlanError> {
    let target = match target {
        None => df.stages.len() - 1,
        Some(t) => {
            let lower = t.to_ascii_lowercase();
            df.stages
                .iter()
                .find(|s| s.name.as_deref() == Some(lower.as_str()))
                .map(|s| s.index)
                .ok_or_else(|| PlanError {
                    pos: Pos::default(),
                    message: format!(
                        "--target {t}: no stage of that name (stages: {})",
                        names(df)
                    ),
                })?
        }
    };
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(df.stages.len());
    for s in &df.stages {
        let mut d = Vec::new();
        let base = expand(s.index, &s.base)?;
        if let Ref::Stage(i) = resolve(df, &base, s.index) {
            d.push(i);
        }
        for ins in &s.instructions {
            let froms: Vec<&String> = match &ins.kind {
                Kind::Copy(c) => c.from.iter().collect(),
                Kind::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_ref()).collect(),
                _ => Vec::new(),
            };
            for f in froms {
                let f = expand(s.index, f)?;
                match resolve_any(df, &f) {
                    Ref::Stage(i) if i == s.index => {
                        return Err(PlanError {
                            pos: ins.pos,
                            message: format!("--from={f}: a stage cannot read itself"),
                        });
                    }
                    Ref::Stage(i) => d.push(i),
                    _ => {}
                }
            }
        }
        deps.push(d);
    }
    let mut out = Vec::new();
    let mut state = vec![0u8; df.stages.len()]; // 0 new, 1 on the path, 2 done
    let mut path = Vec::new();
    visit(df, &deps, target, &mut state, &mut path, &mut out)?;
    Ok(Plan { order: out, deps })
}

/// A `--from` name against every stage: it may name a later stage (a FROM
/// only an earlier one), which makes cycles possible.
pub fn resolve_any(df: &Dockerfile, name: &str) -> Ref {
    resolve(df, name, df.stages.len())
}

fn visit(
    df: &Dockerfile,
    deps: &[Vec<usize>],
    i: usize,
    state: &mut [u8],
    path: &mut Vec<usize>,
    out: &mut Vec<usize>,
) -> Result<(), PlanError> {
    match state[i] {
        2 => return Ok(()),
        1 => {
            let from = path.iter().position(|&p| p == i).unwrap_or(0);
            let cycle: Vec<String> = path[from..]
                .iter()
                .chain(std::iter::once(&i))
                .map(|&s| stage_label(df, s))
                .collect();
            return Err(PlanError {
                pos: df.stages[i].pos,
                message: format!("circular stage references: {}", cycle.join(" -> ")),
            });
        }
        _ => {}
    }
    state[i] = 1;
    path.push(i);
    for &d in &deps[i] {
        visit(df, deps, d, state, path, out)?;
    }
    path.pop();
    state[i] = 2;
    out.push(i);
    Ok(())
}

pub fn stage_label(df: &Dockerfile, i: usize) -> String {
    df.stages[i]
        .name
        .clone()
        .unwrap_or_else(|| format!("stage-{i}"))
}

fn names(df: &Dockerfile) -> String {
    let n: Vec<String> = df.stages.iter().filter_map(|s| s.name.clone()).collect();
    if n.is_empty() {
        "none named".into()
    } else {
        n.join(", ")
    }
}

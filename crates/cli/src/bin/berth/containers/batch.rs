//! Commands over several names (`rm a b c`): each one tried, its failure
//! printed, one error at the end.

use anyhow::{Result, bail};

/// Runs `f` on each name in `list`, printing each failure as it happens;
/// then the error: the one name's own, or "some of them failed".
pub fn each(list: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let mut failed = None;
    for x in list {
        if let Err(err) = f(x) {
            eprintln!("Error: {err:#}");
            failed = Some(err);
        }
    }
    match failed {
        Some(_) if list.len() > 1 => bail!("some of them failed"),
        Some(err) => Err(err),
        None => Ok(()),
    }
}

//! Commands over several names (`rm a b c`): each one tried, its failure
//! printed once, one exit code at the end.

use anyhow::Result;

/// The failures of a batch, each printed already: main prints nothing
/// more and exits with `code`.
#[derive(Debug)]
pub struct Reported {
    pub code: i32,
}

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("some of them failed")
    }
}

impl std::error::Error for Reported {}

/// Runs `f` on each name in `list`. One name: its error as it is, for
/// main to print. Several: each failure printed as it happens (the others
/// still tried), then `Reported`, so that no error is printed twice.
pub fn each(list: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    if let [one] = list {
        return f(one);
    }
    let mut code = None;
    for x in list {
        if let Err(err) = f(x) {
            eprintln!("Error: {}", crate::error_text(&err));
            code = Some(crate::exit_code_for(&err));
        }
    }
    match code {
        Some(code) => Err(Reported { code }.into()),
        None => Ok(()),
    }
}

/// Why a removal failed, as podman's exit codes for `rm`, `rmi`, `volume
/// rm` and `network rm` tell it (docker's agree on the first: 1 for
/// "no such").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Failure {
    /// No such container, image, volume or network: 1.
    Missing,
    /// Running, paused or in use: 2.
    InUse,
    /// Anything else: berth's own code for it (125 mostly).
    Other,
}

fn failure(e: &anyhow::Error) -> Failure {
    use berth_engine::Error as E;
    use berth_image::Error as I;
    for cause in e.chain() {
        let image = match cause.downcast_ref::<E>() {
            Some(E::NotFound(_)) => return Failure::Missing,
            Some(E::Conflict(_)) => return Failure::InUse,
            Some(E::Image(i)) => Some(i),
            Some(_) => None,
            None => cause.downcast_ref::<I>(),
        };
        match image {
            Some(I::NotFound(_)) => return Failure::Missing,
            Some(I::InUse { .. }) => return Failure::InUse,
            _ => {}
        }
    }
    Failure::Other
}

/// `each` for removals, with podman's exit codes: 1 when names were
/// missing and nothing else failed, 2 when one was running or in use,
/// else the code of the other failure. With `force` a missing name is no
/// failure and is not reported: `rm -f web; run --name web` is how
/// scripts start over, and docker and podman both exit 0 for it.
pub fn removals(list: &[String], force: bool, mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let mut worst: Option<(Failure, i32)> = None;
    for x in list {
        let Err(err) = f(x) else { continue };
        let kind = failure(&err);
        if force && kind == Failure::Missing {
            continue;
        }
        eprintln!("Error: {}", crate::error_text(&err));
        let code = match kind {
            Failure::Missing => 1,
            Failure::InUse => 2,
            Failure::Other => crate::exit_code_for(&err),
        };
        if worst.is_none_or(|(k, _)| kind > k) {
            worst = Some((kind, code));
        }
    }
    match worst {
        Some((_, code)) => Err(Reported { code }.into()),
        None => Ok(()),
    }
}

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

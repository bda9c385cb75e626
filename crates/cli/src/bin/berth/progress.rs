//! Pull/push progress: a bar per layer on a terminal, plain lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use berth_image::Digest;
use berth_image::progress::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    quiet: bool,
}

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        let tty = std::io::stderr().is_terminal();
        Bars {
            multi: (tty && !quiet).then(MultiProgress::new),
            bars: Mutex::new(HashMap::new()),
            quiet,
        }
    }
}

impl Progress for Bars {
    fn message(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    fn layer_start(&self, d: &Digest, size: u64) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(m) => {
                let bar = m.add(ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template(
                        "Copying blob {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .expect("template")
                    .progress_chars("=> "),
                );
                bar.set_message(d.short().to_string());
                self.bars.lock().unwrap().insert(d.clone(), bar);
            }
            None => eprintln!("Copying blob {}", d.short()),
        }
    }

    fn layer_bytes(&self, d: &Digest, done: u64) {
        if let Some(b) = self.bars.lock().unwrap().get(d) {
            b.set_position(done);
        }
    }

    fn layer_done(&self, d: &Digest, skipped: bool) {
        if self.quiet {
            return;
        }
        let bar = self.bars.lock().unwrap().remove(d);
        match (bar, &self.multi) {
            (Some(b), _) => b.finish_with_message(format!("{} done", d.short())),
            (None, Some(m)) if skipped => {
                let _ = m.println(format!(
                    "Copying blob {} skipped: already exists",
                    d.short()
                ));
            }
            (None, _) if skipped => eprintln!("Copying blob {} skipped: already exists", d.short()),
            (None, _) => eprintln!("Copying blob {} done", d.short()),
        }
    }
}

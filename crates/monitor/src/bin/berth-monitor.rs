//! berth-monitor <monitor.json>: one per container; see docs/engine.md.

fn main() {
    // Before anything else: the builtin handler forks the container from
    // this process, which must not be able to reach this binary
    // (CVE-2019-5736).
    if let Err(e) = berth_runtime::selfexe::ensure_protected() {
        let msg = format!("error protect the monitor binary: {e}\n");
        // The ready pipe, if the spawner gave one.
        // SAFETY: msg outlives the call; fd 3 is the ready pipe if the
        // spawner gave one (EBADF otherwise, which is harmless).
        unsafe { libc::write(3, msg.as_ptr().cast(), msg.len()) };
        std::process::exit(1);
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(berth_monitor::monitor::main(&args));
}

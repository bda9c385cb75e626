//! `run`, `create`, `attach` and `exec`: a container made from the flags
//! (its image pulled if need be), started, and this terminal relayed to
//! its stdio until it exits.

use std::io::IsTerminal;

use anyhow::{Result, bail};
use berth_engine::Engine;
use berth_engine::model::{Container, Status};

use super::flags::{CreateFlags, ExecFlags, config};

/// Makes the container the flags describe (as `cfg`), pulling its image
/// as --pull says.
fn new_container(
    ctx: &crate::Ctx,
    e: &Engine,
    f: &CreateFlags,
    cfg: berth_engine::model::ContainerConfig,
) -> Result<Container> {
    // Refused before anything is made: an existing file is another
    // container's, maybe running (docker's check).
    if let Some(p) = &f.cidfile
        && p.exists()
    {
        anyhow::bail!(
            "--cidfile {}: the file exists; make sure its container is not running, or delete it",
            p.display()
        );
    }
    let policy = berth_engine::PullPolicy::parse(&f.pull)?;
    let image = e.image_for(
        &f.image,
        policy,
        &crate::pull_options(ctx, f.tls_verify)?,
        &mut |name| eprintln!("Pulling {name}"),
    )?;
    let c = e.create(&image, f.name.as_deref(), cfg)?;
    if let Some(p) = &f.cidfile {
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
            .and_then(|mut file| std::io::Write::write_all(&mut file, c.id.as_bytes()));
        if let Err(err) = written {
            let _ = e.remove(&c.id, true);
            anyhow::bail!("--cidfile {}: {err}", p.display());
        }
    }
    Ok(c)
}

/// `create`: prints the new container's ID.
pub fn create(ctx: &crate::Ctx, e: &Engine, flags: &CreateFlags) -> Result<()> {
    println!("{}", new_container(ctx, e, flags, config(flags)?)?.id);
    Ok(())
}

/// `run`: with -d, starts the container and prints its ID; without,
/// relays this terminal to it until it exits. Its exit code.
pub fn run(ctx: &crate::Ctx, e: &Engine, detach: bool, flags: &CreateFlags) -> Result<i32> {
    let keys = crate::attach::parse_detach_keys(&flags.detach_keys)?;
    let mut cfg = config(flags)?;
    cfg.tty = terminal_for(cfg.tty, cfg.stdin && !detach);
    let c = new_container(ctx, e, flags, cfg)?;
    if detach {
        match e.start(&c.id) {
            Ok(c) => println!("{}", c.id),
            Err(err) => {
                discard(e, &c);
                return Err(err.into());
            }
        }
        return Ok(0);
    }
    let mut client = None;
    let started = e.start_with(&c.id, &mut |c| {
        let sock = e.attach_socket(&c.id);
        client =
            Some(berth_monitor::client::Client::attach(&sock).map_err(|err| {
                berth_engine::Error::Monitor(format!("attach to {}: {err}", c.name))
            })?);
        Ok(())
    });
    let c = match started {
        Ok(c) => c,
        Err(err) => {
            discard(e, &c);
            return Err(err.into());
        }
    };
    let code = relay_container(e, &c, client.expect("attached"), &keys)?;
    if flags.rm {
        // The monitor's cleanup removes it too; whoever comes first.
        e.cleanup(&c.id)?;
    }
    Ok(code)
}

/// Whether a process asked for with -t (and `relayed` stdin, -i in the
/// foreground) gets a terminal. Piped input into a pty never ends: the pty
/// has no end of file to pass on, so `printf x | run -it IMAGE cat` would
/// wait forever. As podman does, say so and go on, here without the
/// terminal, so the input ends where it ends.
fn terminal_for(tty: bool, relayed: bool) -> bool {
    if tty && relayed && !std::io::stdin().is_terminal() {
        eprintln!(
            "Warning: the input device is not a TTY: running without a terminal (-t ignored)"
        );
        return false;
    }
    tty
}

/// A run that failed to start leaves nothing of its own: not the
/// container (podman's and docker's would stay, Created, and hold the
/// name), not the volumes its creation made. The start's error is the one
/// the user sees; a failure here is only a warning.
fn discard(e: &Engine, c: &Container) {
    if let Err(err) = e.discard(&c.id) {
        eprintln!("Warning: removing {} after the failed start: {err}", c.name);
    }
}

/// `attach`: this terminal to a running container until it exits; its
/// exit code.
pub fn attach(e: &Engine, container: &str, detach_keys: &str) -> Result<i32> {
    let keys = crate::attach::parse_detach_keys(detach_keys)?;
    let c = e.container(container)?;
    if c.state.status != Status::Running {
        bail!("container {} is not running", c.name);
    }
    let client = berth_monitor::client::Client::attach(&e.attach_socket(&c.id))?;
    relay_container(e, &c, client, &keys)
}

/// `exec`: a command in a running container; with -d, left running and
/// its session ID printed (podman's; docker prints nothing), else relayed
/// until it exits, its exit code.
pub fn exec(e: &Engine, f: ExecFlags) -> Result<i32> {
    let ExecFlags {
        interactive,
        tty,
        detach,
        env,
        user,
        workdir,
        privileged,
        detach_keys,
        container,
        command,
    } = f;
    let keys = crate::attach::parse_detach_keys(&detach_keys)?;
    let tty = terminal_for(tty, interactive && !detach);
    let session = e.exec_start(
        &container,
        &berth_engine::ExecRequest {
            args: command,
            env,
            user,
            workdir,
            tty,
            interactive,
            detach,
            privileged,
            timeout: None,
            size: if tty {
                crate::attach::terminal_size()
            } else {
                None
            },
        },
    )?;
    let Some(client) = session.client else {
        println!("{}", session.id);
        return Ok(0);
    };
    match crate::attach::relay(client, interactive, tty, &keys, None)? {
        Some(code) => Ok(code),
        None => bail!("the container's monitor went away before the process ended"),
    }
}

/// Relays this terminal to the container's stdio (signals forwarded to
/// it) until it exits; its exit code.
fn relay_container(
    e: &Engine,
    c: &Container,
    client: berth_monitor::client::Client,
    detach_keys: &[u8],
) -> Result<i32> {
    let handler = e.handler(c)?;
    let id = c.id.clone();
    let forward: Box<dyn Fn(i32) + Send> = Box::new(move |sig| {
        let _ = handler.kill(&id, sig, false);
    });
    match crate::attach::relay(
        client,
        c.config.stdin,
        c.config.tty,
        detach_keys,
        Some(forward),
    )? {
        Some(code) => Ok(code),
        // The monitor went away without a word: ask the records.
        None => Ok(e.wait(&c.id, None)?),
    }
}

//! `start`, `stop`, `kill`, `rm`, `wait`, `pause` and `unpause`: one
//! engine call for each container named, each printed as it is done (its
//! exit code, for `wait`).

use anyhow::Result;
use berth_engine::Engine;

use super::batch::each;
use super::flags::stop_timeout;

pub fn start(e: &Engine, containers: &[String]) -> Result<()> {
    each(containers, |c| {
        e.start(c)?;
        println!("{c}");
        Ok(())
    })
}

pub fn stop(e: &Engine, time: Option<u64>, containers: &[String]) -> Result<()> {
    each(containers, |c| {
        e.stop(c, stop_timeout(time))?;
        println!("{c}");
        Ok(())
    })
}

pub fn restart(e: &Engine, time: Option<u64>, containers: &[String]) -> Result<()> {
    each(containers, |c| {
        e.restart(c, stop_timeout(time))?;
        println!("{c}");
        Ok(())
    })
}

pub fn kill(e: &Engine, signal: &str, containers: &[String]) -> Result<()> {
    let sig = berth_engine::signals::parse(signal)?;
    each(containers, |c| {
        e.kill(c, sig)?;
        println!("{c}");
        Ok(())
    })
}

pub fn rm(e: &Engine, force: bool, containers: &[String]) -> Result<()> {
    super::batch::removals(containers, force, |c| {
        e.remove(c, force)?;
        println!("{c}");
        Ok(())
    })
}

pub fn wait(e: &Engine, containers: &[String]) -> Result<()> {
    each(containers, |c| {
        println!("{}", e.wait(c, None)?);
        Ok(())
    })
}

pub fn pause(e: &Engine, containers: &[String]) -> Result<()> {
    each(containers, |c| {
        e.pause(c)?;
        println!("{c}");
        Ok(())
    })
}

pub fn unpause(e: &Engine, containers: &[String]) -> Result<()> {
    each(containers, |c| {
        e.unpause(c)?;
        println!("{c}");
        Ok(())
    })
}

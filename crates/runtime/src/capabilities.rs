//! The five capability sets of the container process.

use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use crate::error::{Error, Result};

/// The spec's names as the kernel's capabilities, leaving out those this
/// kernel does not know (newer than it), as runc does.
fn convert(set: Option<&Capabilities>, supported: &CapsHashSet) -> CapsHashSet {
    set.into_iter()
        .flatten()
        .filter_map(|c| format!("CAP_{c}").parse::<caps::Capability>().ok())
        .filter(|c| supported.contains(c))
        .collect()
}

/// The capabilities this kernel knows: one read of cap_last_cap rather than
/// a probe per capability.
fn supported() -> CapsHashSet {
    static SUPPORTED: std::sync::OnceLock<CapsHashSet> = std::sync::OnceLock::new();
    SUPPORTED
        .get_or_init(|| {
            caps::runtime::procfs_all_supported(None)
                .unwrap_or_else(|_| caps::runtime::thread_all_supported())
        })
        .clone()
}

fn err(what: &str, e: caps::errors::CapsError) -> Error {
    Error::Other(format!("capabilities: {what}: {e}"))
}

/// Capabilities resolved against the running kernel.
pub struct CapSets {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

impl CapSets {
    /// The sets of `c`; without `c`, every set is empty.
    pub fn new(c: Option<&LinuxCapabilities>) -> CapSets {
        let supported = supported();
        let set = |f: fn(&LinuxCapabilities) -> &Option<Capabilities>| {
            convert(c.and_then(|c| f(c).as_ref()), &supported)
        };
        CapSets {
            bounding: set(LinuxCapabilities::bounding),
            effective: set(LinuxCapabilities::effective),
            permitted: set(LinuxCapabilities::permitted),
            inheritable: set(LinuxCapabilities::inheritable),
            ambient: set(LinuxCapabilities::ambient),
        }
    }

    /// Shrinks the bounding set; needs CAP_SETPCAP, so it comes before the
    /// switch to the container's user.
    pub fn drop_bounding(&self) -> Result<()> {
        for cap in supported() {
            if !self.bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(|e| err(&format!("drop {cap} from the bounding set"), e))?;
            }
        }
        Ok(())
    }

    /// Sets effective, permitted, inheritable and ambient, after the user
    /// switch (which cleared the effective set).
    pub fn apply(&self) -> Result<()> {
        // Inheritable first, while CAP_SETPCAP may still be effective. Then
        // effective must stay within permitted at every step: empty it,
        // set permitted, and only then the effective set wanted.
        caps::set(None, CapSet::Inheritable, &self.inheritable)
            .map_err(|e| err("set inheritable", e))?;
        caps::clear(None, CapSet::Effective).map_err(|e| err("clear effective", e))?;
        caps::set(None, CapSet::Permitted, &self.permitted).map_err(|e| err("set permitted", e))?;
        caps::set(None, CapSet::Effective, &self.effective).map_err(|e| err("set effective", e))?;
        caps::clear(None, CapSet::Ambient).map_err(|e| err("clear ambient", e))?;
        for cap in &self.ambient {
            // An ambient capability must be permitted and inheritable; the
            // kernel refuses the others, which runc ignores as well.
            let _ = caps::raise(None, CapSet::Ambient, *cap);
        }
        Ok(())
    }
}

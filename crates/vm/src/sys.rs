//! Small pieces both sides of berth-vm use: the host's keepers and
//! holder, and the guest's agent.

use std::os::fd::RawFd;

/// A pollfd for `fd` waiting for `events` (a negative fd is skipped by
/// poll).
pub fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// A MAC as QEMU takes it and the guest's sysfs shows it.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    #[test]
    fn macs_are_lowercase_colon_hex() {
        assert_eq!(
            super::mac_text(&[2, 0x42, 0xac, 0x11, 0, 2]),
            "02:42:ac:11:00:02"
        );
    }
}

//! The rtnetlink socket, opened in one place for the runtime's device
//! moves and the network crate's link and tc requests.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// A new NETLINK_ROUTE socket (close-on-exec), in the calling thread's
/// network namespace.
pub fn route_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes integers only.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

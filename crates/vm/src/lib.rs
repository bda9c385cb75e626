//! berth-vm: each container in a VM of its own (Kata Containers' role)
//! behind runc's command line. The host side ([`host`]) boots QEMU with
//! Debian's kernel and an initramfs whose /init is the agent ([`guest`]),
//! a static binary that runs the container inside the guest with berth's
//! runtime library. The two talk in frames ([`proto`]) over a
//! virtio-serial port; the rootfs and bind sources reach the guest over
//! virtio-9p, the container's network through a tap redirected to and
//! from its interface.

pub mod guest;
pub mod host;
pub mod proto;
pub mod sys;

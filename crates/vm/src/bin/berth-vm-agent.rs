//! The guest's init: see berth_vm::guest.

fn main() {
    berth_vm::guest::main()
}

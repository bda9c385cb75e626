//! Image reference parsing: any bytes parse or fail without panicking or
//! hanging (libFuzzer's -timeout catches a loop), and what parses prints
//! as a reference that parses to the same value.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    berth_image::reference::check_round_trip(data);
});

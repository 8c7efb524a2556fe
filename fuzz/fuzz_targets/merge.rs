#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    promdrop_textformat_fuzz::check_merge(data);
});

#![no_main]

use libfuzzer_sys::fuzz_target;
use promdrop_textformat::Format;

fuzz_target!(|data: &[u8]| {
    promdrop_textformat_fuzz::check_roundtrip(data, Format::OpenMetrics);
});

//! The GetStreamingEvents reader: bytes arrive in pieces of any size; framing,
//! parsing and the limits must turn anything into messages or an error, never a panic.

#![no_main]

use booking_sync::ews::StreamDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece size, so the fuzzer explores chunk boundaries.
    let Some((&piece, body)) = data.split_first() else {
        return;
    };
    let mut decoder = StreamDecoder::new();
    for chunk in body.chunks(usize::from(piece).max(1)) {
        decoder.push(chunk);
        loop {
            match decoder.next_message() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = decoder.finish();
});

//! A byte stream split into messages, each parsed under a fuzzed session context.
#![no_main]

use bgp_wire::{Framer, MessageView};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let ctx = bgp_fuzz::ctx_from(first);
    let mut framer = Framer::new();
    framer.set_extended_message(ctx.extended_message);
    // Feed in uneven chunks, as a socket would.
    let mut buf = BytesMut::new();
    for chunk in rest.chunks(usize::from(first % 61) + 1) {
        buf.extend_from_slice(chunk);
        loop {
            match framer.next_frame(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.bytes.len() <= framer.max_len());
                    if let Ok(MessageView::Update(u)) = MessageView::parse(&frame.bytes, &ctx) {
                        bgp_fuzz::exercise(&u);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.len() < 2 * 65535, "the buffer holds at most one message");
    }
});

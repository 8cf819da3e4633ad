//! One whole message of any type under a fuzzed context; errors map to NOTIFICATIONs.
#![no_main]

use bgp_wire::{Message, MessageView, Notification};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, msg)) = data.split_first() else {
        return;
    };
    let ctx = bgp_fuzz::ctx_from(first);
    match MessageView::parse(msg, &ctx) {
        Ok(MessageView::Update(u)) => bgp_fuzz::exercise(&u),
        Ok(_) => {}
        Err(e) => {
            let n = Notification::from(&e);
            std::hint::black_box(n.to_string());
        }
    }
    let _ = std::hint::black_box(Message::decode(msg, &ctx));
});

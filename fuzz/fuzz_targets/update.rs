//! An UPDATE body under a fuzzed session context: never panics, every accessor is safe.
#![no_main]

use bgp_wire::update::UpdateView;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let ctx = bgp_fuzz::ctx_from(first);
    let v = UpdateView::parse(body, &ctx);
    bgp_fuzz::exercise(&v);
});

//! decode → owned → encode → decode: a well-formed UPDATE survives re-encoding unchanged.
#![no_main]

use bgp_wire::update::{Treatment, UpdateView};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let ctx = bgp_fuzz::ctx_from(first);
    let v = UpdateView::parse(body, &ctx);
    if v.treatment() != Treatment::Normal {
        return;
    }
    let owned = v.to_update();
    let mut out = BytesMut::new();
    if owned.encode(&ctx, &mut out).is_err() {
        return;
    }
    let again = UpdateView::parse(&out[19..], &ctx);
    assert_eq!(again.treatment(), Treatment::Normal, "re-encoded update is clean");
    assert_eq!(again.to_update(), owned);
    // Canonical bytes are a fixed point.
    let mut out2 = BytesMut::new();
    again.to_update().encode(&ctx, &mut out2).expect("fits");
    assert_eq!(out, out2);
});

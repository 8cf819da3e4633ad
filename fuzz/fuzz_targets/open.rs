//! An OPEN body: the view and the owned form agree, and what decodes re-encodes to a
//! message that decodes to the same thing.
#![no_main]

use bgp_wire::open::{Open, OpenView};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let view = OpenView::new(body);
    let owned = Open::decode(body);
    assert_eq!(view.is_ok(), owned.is_ok());
    if let (Ok(view), Ok(open)) = (view, owned) {
        for c in view.capabilities() {
            std::hint::black_box(c);
        }
        let mut out = BytesMut::new();
        open.encode(&mut out);
        let again = Open::decode(&out[19..]).expect("our own OPEN decodes");
        assert_eq!(again, open);
    }
});

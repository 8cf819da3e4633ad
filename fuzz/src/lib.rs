//! Shared helpers of the fuzz targets.

use bgp_wire::update::UpdateView;
use bgp_wire::{Family, FamilySet, SessionCtx};

/// A session context chosen by the fuzzer's first input byte, so every target explores
/// every negotiated combination (as holo fuzzes its decode context).
pub fn ctx_from(byte: u8) -> SessionCtx {
    let set = |bits: u8| {
        let mut s = FamilySet::EMPTY;
        if bits & 1 != 0 {
            s.insert(Family::Ipv4Unicast);
        }
        if bits & 2 != 0 {
            s.insert(Family::Ipv6Unicast);
        }
        s
    };
    let mut ctx = SessionCtx {
        four_octet_as: byte & 0x01 == 0,
        extended_message: byte & 0x02 != 0,
        ibgp: byte & 0x04 != 0,
        add_path_rx: set(byte >> 3),
        extended_next_hop: set((byte >> 5) & 1),
        families: if byte & 0x40 != 0 { set(1) } else { FamilySet::ALL },
        ..SessionCtx::default()
    };
    ctx.add_path_tx = ctx.add_path_rx;
    if byte & 0x80 != 0 {
        ctx.policy.enforce_first_as = Some(65001);
        ctx.policy.max_as_path_len = Some(64);
    }
    ctx
}

/// Calls every accessor and iterator of a parsed UPDATE, checking the invariants that
/// hold whatever the input.
pub fn exercise(v: &UpdateView<'_>) {
    use bgp_wire::update::Treatment;
    let reset = v.treatment() == Treatment::SessionReset;
    let announced = v.announced().count();
    let withdrawn = v.withdrawals().count();
    if reset {
        assert_eq!(announced + withdrawn, 0, "a reset update exposes no prefixes");
        let n = v.notification().expect("a reset has a NOTIFICATION");
        assert_eq!(n.code.0, 3);
    }
    if v.issue_count() <= bgp_wire::update::MAX_ISSUES {
        let max = v.issues().iter().map(|i| i.treatment).max().unwrap_or_default();
        assert_eq!(max, v.treatment());
    }
    for a in v.attributes() {
        std::hint::black_box(a);
    }
    std::hint::black_box((v.origin(), v.next_hop(), v.med(), v.local_pref()));
    std::hint::black_box((v.atomic_aggregate(), v.aggregator(), v.as4_aggregator()));
    std::hint::black_box((v.originator_id(), v.only_to_customer(), v.end_of_rib()));
    if let Some(p) = v.as_path() {
        std::hint::black_box((p.route_len(), p.first_as(), p.to_owned_path()));
    }
    if let Some(p) = v.as4_path() {
        std::hint::black_box(p.to_owned_path());
    }
    if let Some(c) = v.cluster_list() {
        std::hint::black_box(c.count());
    }
    std::hint::black_box(v.communities().count());
    std::hint::black_box(v.ext_communities().count());
    std::hint::black_box(v.large_communities().count());
    if let Some(m) = v.mp_reach() {
        std::hint::black_box((m.next_hop(), m.nlri().count()));
    }
    std::hint::black_box(v.to_update());
}

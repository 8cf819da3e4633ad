//! Every UPDATE row of `docs/robustness.md` (U1-U8, A1-A32), with the table's exact bytes,
//! checked against the treatment RFC 7606 calls for and, for resets, the NOTIFICATION.
//!
//! Header rows (H1-H5) are tested in `src/header.rs`, OPEN rows (O1-O9) in `src/open.rs`,
//! N1 in `src/notification.rs`. Rows that need session or RIB state (A14 "our own
//! address", A22 loops, N4 UPDATE in OpenSent) belong to `bgp-fsm` and `rib`.

use bgp_wire::attr::{AttrFlags, AttrType, PathAttribute};
use bgp_wire::update::{IssueKind, Treatment, UpdateView};
use bgp_wire::{Family, FamilySet, Framer, SessionCtx};
use bytes::{Bytes, BytesMut};
use hex_literal::hex;

const ORIGIN: &[u8] = &hex!("40 01 01 00");
const AS_PATH: &[u8] = &hex!("40 02 06 02 01 0000FDE9");
const NEXT_HOP: &[u8] = &hex!("40 03 04 C0000201");
const NLRI: &[u8] = &hex!("18 C63364");
/// MP_REACH_NLRI for 2001:db8::/32 via 2001:db8::1 (the table's UPD6).
const MP_REACH6: &[u8] =
    &hex!("80 0E 1A 0002 01 10 20010DB8000000000000000000000001 00 20 20010DB8");

fn ebgp() -> SessionCtx {
    SessionCtx::default()
}

fn ibgp() -> SessionCtx {
    SessionCtx {
        ibgp: true,
        ..SessionCtx::default()
    }
}

/// A whole UPDATE message: header, empty withdrawn routes, the attributes, the NLRI.
fn message(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let len = 19 + 2 + withdrawn.len() + 2 + attrs.len() + nlri.len();
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&(len as u16).to_be_bytes());
    m.push(2);
    m.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    m.extend_from_slice(withdrawn);
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(attrs);
    m.extend_from_slice(nlri);
    m
}

fn attrs(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// NOTIFICATION code, subcode and data.
type Notif = (u8, u8, Vec<u8>);

/// Frames the message as a session would (so the header is checked too), then parses it:
/// the treatment, the issues, the NOTIFICATION if any, the announced prefixes.
fn parse(msg: &[u8], ctx: &SessionCtx) -> (Treatment, Vec<IssueKind>, Option<Notif>, Vec<String>) {
    let mut framer = Framer::new();
    framer.set_extended_message(ctx.extended_message);
    let mut buf = BytesMut::from(msg);
    let frame = framer.next_frame(&mut buf).expect("header").expect("whole");
    let v = UpdateView::parse(frame.body(), ctx);
    let notif = v
        .notification()
        .map(|n| (n.code.0, n.subcode, n.data.to_vec()));
    let announced = v.announced().map(|n| n.prefix.to_string()).collect();
    (
        v.treatment(),
        v.issues().iter().map(|i| i.kind).collect(),
        notif,
        announced,
    )
}

fn treatment(msg: &[u8], ctx: &SessionCtx) -> Treatment {
    parse(msg, ctx).0
}

#[test]
fn base_update_is_normal() {
    let m = message(&[], &attrs(&[ORIGIN, AS_PATH, NEXT_HOP]), NLRI);
    assert_eq!(m.len(), 0x2f);
    let (t, issues, n, ann) = parse(&m, &ebgp());
    assert_eq!((t, issues, n), (Treatment::Normal, vec![], None));
    assert_eq!(ann, ["198.51.100.0/24"]);
}

#[test]
fn u1_withdrawn_length_overrun_resets_3_1() {
    let mut m = message(&[], &attrs(&[ORIGIN, AS_PATH, NEXT_HOP]), NLRI);
    m[19..21].copy_from_slice(&hex!("FFFF"));
    let (t, _, n, ann) = parse(&m, &ebgp());
    assert_eq!(t, Treatment::SessionReset);
    assert_eq!(n, Some((3, 1, vec![])));
    assert!(ann.is_empty(), "nothing is exposed from a reset update");
}

#[test]
fn u2_total_attribute_length_overrun_resets_3_1() {
    let mut m = message(&[], &attrs(&[ORIGIN, AS_PATH, NEXT_HOP]), NLRI);
    m[21..23].copy_from_slice(&hex!("0100"));
    let (t, _, n, _) = parse(&m, &ebgp());
    assert_eq!((t, n), (Treatment::SessionReset, Some((3, 1, vec![]))));
}

#[test]
fn u3_attribute_overrunning_the_list_with_nlri_is_withdrawn() {
    let m = message(
        &[],
        &attrs(&[&hex!("40 01 20 00"), AS_PATH, NEXT_HOP]),
        NLRI,
    );
    let (t, issues, n, ann) = parse(&m, &ebgp());
    assert_eq!(t, Treatment::TreatAsWithdraw);
    assert_eq!(issues[0], IssueKind::AttributeOverrun);
    assert_eq!(n, None);
    assert_eq!(ann, ["198.51.100.0/24"], "the NLRI is found by the TPAL");
}

#[test]
fn u4_attribute_overrun_without_nlri_resets_3_1() {
    let m = message(&[], &attrs(&[&hex!("40 01 20 00"), AS_PATH, NEXT_HOP]), &[]);
    let (t, issues, n, _) = parse(&m, &ebgp());
    assert_eq!(t, Treatment::SessionReset);
    assert!(issues.contains(&IssueKind::NothingToWithdraw));
    assert_eq!(n, Some((3, 1, vec![])));
}

#[test]
fn u5_trailing_octets_in_the_list_are_withdrawn() {
    let m = message(
        &[],
        &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, &hex!("40 01")]),
        NLRI,
    );
    let (t, issues, _, ann) = parse(&m, &ebgp());
    assert_eq!(t, Treatment::TreatAsWithdraw);
    assert_eq!(issues, [IssueKind::AttributeOverrun]);
    assert_eq!(ann.len(), 1);
}

#[test]
fn u6_nlri_without_attributes_is_withdrawn_never_processed() {
    let m = message(&[], &[], NLRI);
    let (t, issues, _, ann) = parse(&m, &ebgp());
    assert_eq!(t, Treatment::TreatAsWithdraw);
    assert_eq!(issues, [IssueKind::MissingWellKnown; 3]);
    assert_eq!(ann, ["198.51.100.0/24"]);
}

#[test]
fn u7_invalid_network_field_resets_3_10() {
    let base = attrs(&[ORIGIN, AS_PATH, NEXT_HOP]);
    for nlri in [&hex!("21 C6336400 00")[..], &hex!("18 C633")[..]] {
        let (t, _, n, _) = parse(&message(&[], &base, nlri), &ebgp());
        assert_eq!(
            (t, n),
            (Treatment::SessionReset, Some((3, 10, vec![]))),
            "{nlri:02x?}"
        );
    }
    let (t, _, n, _) = parse(&message(&hex!("28 C633640000"), &[], &[]), &ebgp());
    assert_eq!((t, n), (Treatment::SessionReset, Some((3, 10, vec![]))));
}

#[test]
fn u8_end_of_rib_versus_attributes_without_nlri() {
    let eor = message(&[], &[], &[]);
    assert_eq!(eor.len(), 23);
    let mut buf = BytesMut::from(&eor[..]);
    let f = Framer::new().next_frame(&mut buf).unwrap().unwrap();
    let v = UpdateView::parse(f.body(), &ebgp());
    assert_eq!(v.treatment(), Treatment::Normal);
    assert_eq!(v.end_of_rib(), Some(Family::Ipv4Unicast));

    // Attributes, no NLRI, a malformed MED: nothing to withdraw, so a reset whose
    // NOTIFICATION is the MED's own error (3/5 with the attribute).
    let med = hex!("80 04 05 0000000064");
    let (t, _, n, _) = parse(
        &message(&[], &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, &med]), &[]),
        &ebgp(),
    );
    assert_eq!(t, Treatment::SessionReset);
    assert_eq!(n, Some((3, 5, med.to_vec())));

    // ... unless every error is a discard.
    let t = treatment(
        &message(
            &[],
            &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, &hex!("40 06 01 00")]),
            &[],
        ),
        &ebgp(),
    );
    assert_eq!(t, Treatment::AttributeDiscard);
}

#[test]
fn a1_a2_origin_value_length_and_flags_are_withdrawn() {
    for origin in [
        &hex!("40 01 01 03")[..],
        &hex!("40 01 02 0000"),
        &hex!("80 01 01 00"),
        &hex!("00 01 01 00"),
    ] {
        let t = treatment(
            &message(&[], &attrs(&[origin, AS_PATH, NEXT_HOP]), NLRI),
            &ebgp(),
        );
        assert_eq!(t, Treatment::TreatAsWithdraw, "{origin:02x?}");
    }
}

#[test]
fn a3_duplicate_origin_keeps_the_first() {
    let m = message(
        &[],
        &attrs(&[&hex!("40 01 01 00 40 01 01 02"), AS_PATH, NEXT_HOP]),
        NLRI,
    );
    let mut buf = BytesMut::from(&m[..]);
    let f = Framer::new().next_frame(&mut buf).unwrap().unwrap();
    let v = UpdateView::parse(f.body(), &ebgp());
    assert_eq!(v.treatment(), Treatment::AttributeDiscard);
    assert_eq!(v.origin(), Some(bgp_wire::attr::Origin::IGP));
    assert_eq!(
        v.attributes().filter(|a| a.ty == AttrType::ORIGIN).count(),
        1
    );
}

#[test]
fn a4_two_mp_reach_attributes_reset_3_1() {
    let m = message(&[], &attrs(&[ORIGIN, AS_PATH, MP_REACH6, MP_REACH6]), &[]);
    let (t, _, n, _) = parse(&m, &ebgp());
    assert_eq!((t, n), (Treatment::SessionReset, Some((3, 1, vec![]))));
}

#[test]
fn upd6_base_is_normal() {
    let m = message(&[], &attrs(&[ORIGIN, AS_PATH, MP_REACH6]), &[]);
    let (t, issues, _, ann) = parse(&m, &ebgp());
    assert_eq!((t, issues), (Treatment::Normal, vec![]));
    assert_eq!(ann, ["2001:db8::/32"]);
}

#[test]
fn a5_missing_mandatory_attributes_are_withdrawn() {
    for parts in [[AS_PATH, NEXT_HOP], [ORIGIN, NEXT_HOP], [ORIGIN, AS_PATH]] {
        let (t, issues, _, _) = parse(&message(&[], &attrs(&parts), NLRI), &ebgp());
        assert_eq!(
            (t, issues),
            (
                Treatment::TreatAsWithdraw,
                vec![IssueKind::MissingWellKnown]
            )
        );
    }
    // NEXT_HOP is not needed when only MP_REACH_NLRI announces.
    let t = treatment(
        &message(&[], &attrs(&[ORIGIN, AS_PATH, MP_REACH6]), &[]),
        &ebgp(),
    );
    assert_eq!(t, Treatment::Normal);
    let t = treatment(&message(&[], &attrs(&[AS_PATH, MP_REACH6]), &[]), &ebgp());
    assert_eq!(t, Treatment::TreatAsWithdraw);
}

#[test]
fn a6_a7_a8_malformed_as_path_is_withdrawn() {
    for path in [
        &hex!("40 02 06 02 02 0000FDE9")[..],
        &hex!("40 02 05 02 01 0000FD"),
        &hex!("40 02 07 02 01 0000FDE9 00"),
        &hex!("40 02 02 02 00"),
        &hex!("40 02 06 05 01 0000FDE9"),
    ] {
        let (t, issues, _, _) = parse(
            &message(&[], &attrs(&[ORIGIN, path, NEXT_HOP]), NLRI),
            &ebgp(),
        );
        assert_eq!(t, Treatment::TreatAsWithdraw, "{path:02x?}");
        assert_eq!(issues, [IssueKind::MalformedAsPath]);
    }
}

#[test]
fn a9_first_as_is_enforced_when_configured() {
    let m = message(
        &[],
        &attrs(&[ORIGIN, &hex!("40 02 06 02 01 0000FDEA"), NEXT_HOP]),
        NLRI,
    );
    assert_eq!(treatment(&m, &ebgp()), Treatment::Normal);
    let mut ctx = ebgp();
    ctx.policy.enforce_first_as = Some(65001);
    assert_eq!(parse(&m, &ctx).1, [IssueKind::FirstAsMismatch]);
}

#[test]
fn a11_as_set_is_withdrawn_by_default() {
    let path = hex!("40 02 0C 02 01 0000FDE9 01 01 0000FDEA");
    let m = message(&[], &attrs(&[ORIGIN, &path, NEXT_HOP]), NLRI);
    assert_eq!(parse(&m, &ebgp()).1, [IssueKind::AsSet]);
    let mut ctx = ebgp();
    ctx.policy.reject_as_set = false;
    assert_eq!(treatment(&m, &ctx), Treatment::Normal);
}

#[test]
fn a12_very_long_as_path() {
    // 3000 ASes in 12 segments: only an extended message holds it.
    let mut value = Vec::new();
    for chunk in (1..=3000u32).collect::<Vec<_>>().chunks(255) {
        value.extend_from_slice(&[2, chunk.len() as u8]);
        for a in chunk {
            value.extend_from_slice(&(a + 64511).to_be_bytes());
        }
    }
    let mut path = vec![0x50, 0x02];
    path.extend_from_slice(&(value.len() as u16).to_be_bytes());
    path.extend_from_slice(&value);
    let m = message(&[], &attrs(&[ORIGIN, &path, NEXT_HOP]), NLRI);
    let mut ctx = ebgp();
    ctx.extended_message = true;
    assert_eq!(treatment(&m, &ctx), Treatment::Normal);
    ctx.policy.max_as_path_len = Some(2048);
    assert_eq!(parse(&m, &ctx).1, [IssueKind::AsPathTooLong]);
}

#[test]
fn a13_a14_next_hop_length_and_martians() {
    let m = message(
        &[],
        &attrs(&[ORIGIN, AS_PATH, &hex!("40 03 03 C00002")]),
        NLRI,
    );
    assert_eq!(parse(&m, &ebgp()).1, [IssueKind::AttributeLength]);
    for nh in [
        hex!("7F000001"),
        hex!("00000000"),
        hex!("E0000001"),
        hex!("FFFFFFFF"),
    ] {
        let nh = [&hex!("40 03 04")[..], &nh].concat();
        let (t, issues, n, _) = parse(
            &message(&[], &attrs(&[ORIGIN, AS_PATH, &nh]), NLRI),
            &ebgp(),
        );
        assert_eq!(
            (t, issues, n),
            (
                Treatment::TreatAsWithdraw,
                vec![IssueKind::MartianNextHop],
                None
            )
        );
    }
    let mut lab = ebgp();
    lab.policy.reject_martian_next_hop = false;
    let m = message(
        &[],
        &attrs(&[ORIGIN, AS_PATH, &hex!("40 03 04 7F000001")]),
        NLRI,
    );
    assert_eq!(treatment(&m, &lab), Treatment::Normal);
}

#[test]
fn a15_med_length_is_withdrawn() {
    let m = message(
        &[],
        &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, &hex!("80 04 05 0000000064")]),
        NLRI,
    );
    assert_eq!(parse(&m, &ebgp()).1, [IssueKind::AttributeLength]);
    assert_eq!(treatment(&m, &ebgp()), Treatment::TreatAsWithdraw);
}

#[test]
fn a16_local_pref() {
    let lp = hex!("40 05 04 00000064");
    let m = message(&[], &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, &lp]), NLRI);
    assert_eq!(parse(&m, &ebgp()).1, [IssueKind::NotFromExternalPeer]);
    assert_eq!(treatment(&m, &ebgp()), Treatment::AttributeDiscard);
    assert_eq!(treatment(&m, &ibgp()), Treatment::Normal);
    let m = message(
        &[],
        &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, &hex!("40 05 02 0064")]),
        NLRI,
    );
    assert_eq!(treatment(&m, &ibgp()), Treatment::TreatAsWithdraw);
}

#[test]
fn a17_a18_atomic_aggregate_and_aggregator_lengths_are_discarded() {
    let two = SessionCtx {
        four_octet_as: false,
        ..ebgp()
    };
    let as2 = hex!("40 02 04 02 01 FDE9");
    let cases: [(&[u8], &SessionCtx, &[u8]); 3] = [
        (&hex!("40 06 01 00"), &ebgp(), AS_PATH),
        (&hex!("C0 07 06 FDE9 C0000201"), &ebgp(), AS_PATH),
        (&hex!("C0 07 08 0000FDE9 C0000201"), &two, &as2),
    ];
    for (a, ctx, path) in cases {
        let m = message(&[], &attrs(&[ORIGIN, path, NEXT_HOP, a]), NLRI);
        let (t, issues, _, ann) = parse(&m, ctx);
        assert_eq!(t, Treatment::AttributeDiscard, "{a:02x?}");
        assert_eq!(issues, [IssueKind::AttributeLength]);
        assert_eq!(ann.len(), 1);
    }
}

#[test]
fn a19_community_lengths_are_withdrawn() {
    for c in [
        &hex!("C0 08 00")[..],
        &hex!("C0 08 05 FDE9006400"),
        &hex!("C0 10 00"),
        &hex!("C0 10 07 00020000FDE900"),
        &hex!("C0 20 00"),
        &hex!("C0 20 0D 0000FDE9 00000001 00000002 00"),
    ] {
        let t = treatment(
            &message(&[], &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, c]), NLRI),
            &ebgp(),
        );
        assert_eq!(t, Treatment::TreatAsWithdraw, "{c:02x?}");
    }
}

#[test]
fn a20_a21_reflector_attributes() {
    let oid = hex!("80 09 04 C0000202");
    let cl = hex!("80 0A 04 01000001");
    for a in [&oid[..], &cl] {
        let m = message(&[], &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, a]), NLRI);
        assert_eq!(treatment(&m, &ebgp()), Treatment::AttributeDiscard);
        assert_eq!(treatment(&m, &ibgp()), Treatment::Normal);
    }
    for a in [
        &hex!("80 09 03 C00002")[..],
        &hex!("80 0A 06 01000001 0100"),
    ] {
        let m = message(&[], &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, a]), NLRI);
        assert_eq!(treatment(&m, &ibgp()), Treatment::TreatAsWithdraw);
    }
}

#[test]
fn a25_unknown_well_known_resets_3_2_with_the_attribute() {
    let m = message(
        &[],
        &attrs(&[ORIGIN, AS_PATH, NEXT_HOP, &hex!("40 F0 01 00")]),
        NLRI,
    );
    let (t, _, n, _) = parse(&m, &ebgp());
    assert_eq!(
        (t, n),
        (
            Treatment::SessionReset,
            Some((3, 2, hex!("40 F0 01 00").to_vec()))
        )
    );
}

#[test]
fn a26_a27_unknown_optional_attributes() {
    let m = message(
        &[],
        &attrs(&[
            ORIGIN,
            AS_PATH,
            NEXT_HOP,
            &hex!("80 F0 02 ABCD"),
            &hex!("C0 F1 02 ABCD"),
        ]),
        NLRI,
    );
    let mut buf = BytesMut::from(&m[..]);
    let f = Framer::new().next_frame(&mut buf).unwrap().unwrap();
    let v = UpdateView::parse(f.body(), &ebgp());
    assert_eq!(v.treatment(), Treatment::Normal);
    let tys: Vec<u8> = v.attributes().map(|a| a.ty.0).collect();
    assert_eq!(tys, [1, 2, 3, 0xF1], "non-transitive 0xF0 is not passed on");
    // Re-emitted byte for byte with the Partial bit set.
    let u = v.to_update();
    let Some(PathAttribute::Unknown(raw)) = u.attr(AttrType(0xF1)) else {
        panic!("unknown transitive attribute kept")
    };
    let again = raw.for_readvertisement().expect("transitive");
    assert_eq!(again.flags, AttrFlags(0xE0));
    let mut out = BytesMut::new();
    PathAttribute::Unknown(again).encode(&ebgp(), &mut out);
    assert_eq!(&out[..], &hex!("E0 F1 02 ABCD")[..]);
}

#[test]
fn a29_a30_malformed_mp_reach_disables_the_family() {
    let nh15 = hex!("80 0E 19 0002 01 0F 20010DB80000000000000000000000 00 20 20010DB8");
    for mp in [&nh15[..], &hex!("80 0E 03 0002 01")] {
        let m = message(&[], &attrs(&[ORIGIN, AS_PATH, mp]), &[]);
        let mut buf = BytesMut::from(&m[..]);
        let f = Framer::new().next_frame(&mut buf).unwrap().unwrap();
        let v = UpdateView::parse(f.body(), &ebgp());
        assert_eq!(v.treatment(), Treatment::AfiSafiDisable, "{mp:02x?}");
        let issue = v
            .issues()
            .iter()
            .find(|i| i.treatment == Treatment::AfiSafiDisable)
            .unwrap();
        assert_eq!(issue.family, Some(Family::Ipv6Unicast));
        let n = v.notification().unwrap();
        assert_eq!((n.code.0, n.subcode, &n.data[..]), (3, 9, mp));
        assert!(v.mp_reach().is_none());
    }
    // Too short to tell the family: a reset.
    let m = message(&[], &attrs(&[ORIGIN, AS_PATH, &hex!("80 0E 02 0002")]), &[]);
    assert_eq!(parse(&m, &ebgp()).2.map(|n| (n.0, n.1)), Some((3, 9)));
}

#[test]
fn a31_unnegotiated_family_is_never_decoded() {
    let v4only = SessionCtx {
        families: FamilySet::only(Family::Ipv4Unicast),
        ..ebgp()
    };
    let m = message(&[], &attrs(&[ORIGIN, AS_PATH, MP_REACH6]), &[]);
    let (t, issues, n, ann) = parse(&m, &v4only);
    assert_eq!(
        (t, issues, n),
        (
            Treatment::AttributeDiscard,
            vec![IssueKind::UnnegotiatedFamily],
            None
        )
    );
    assert!(ann.is_empty());
    // Flowspec (SAFI 133) with an empty NLRI, as in FRR CVE-2023-38406.
    let fs = hex!("80 0E 05 0001 85 00 00");
    let (t, issues, _, _) = parse(&message(&[], &attrs(&[ORIGIN, AS_PATH, &fs]), &[]), &ebgp());
    assert_eq!(
        (t, issues),
        (
            Treatment::AttributeDiscard,
            vec![IssueKind::UnnegotiatedFamily]
        )
    );
}

#[test]
fn a32_as4_attributes_are_discarded() {
    let two = SessionCtx {
        four_octet_as: false,
        ..ebgp()
    };
    let as2 = hex!("40 02 04 02 01 FDE9");
    for (a, ctx, path) in [
        (&hex!("C0 11 00")[..], &ebgp(), AS_PATH),
        (&hex!("C0 11 00"), &two, &as2[..]),
        (&hex!("C0 11 06 02 02 0000FDE9"), &two, &as2),
        (&hex!("C0 12 06 FDE9 C0000201"), &two, &as2),
    ] {
        let m = message(&[], &attrs(&[ORIGIN, path, NEXT_HOP, a]), NLRI);
        assert_eq!(treatment(&m, ctx), Treatment::AttributeDiscard, "{a:02x?}");
    }
}

#[test]
fn issues_are_bounded() {
    // A thousand duplicate attributes: counted, not stored.
    let mut a = attrs(&[ORIGIN, AS_PATH, NEXT_HOP]);
    for _ in 0..1000 {
        a.extend_from_slice(&hex!("40 01 01 00"));
    }
    let m = message(&[], &a, NLRI);
    let mut ctx = ebgp();
    ctx.extended_message = true;
    let mut buf = BytesMut::from(&m[..]);
    let mut framer = Framer::new();
    framer.set_extended_message(true);
    let f = framer.next_frame(&mut buf).unwrap().unwrap();
    let v = UpdateView::parse(f.body(), &ctx);
    assert_eq!(v.issue_count(), 1000);
    assert_eq!(v.issues().len(), bgp_wire::update::MAX_ISSUES);
    let _ = Bytes::new();
}

/// Found by the `update` fuzz target: more discards than fit the issue list came before
/// the issue that reset the session, which then had no NOTIFICATION to send.
#[test]
fn reset_issue_survives_a_full_issue_list() {
    let body = hex!(
        "0000 0033 90000000 0000000000 01b8000000 050000ea80 0404000000 40010100 5002000602
         010000fdfdea 0000000600060000 c0100800"
    );
    let ctx = SessionCtx {
        extended_next_hop: FamilySet::only(Family::Ipv4Unicast),
        ..ebgp()
    };
    let v = UpdateView::parse(&body, &ctx);
    assert!(v.issue_count() > bgp_wire::update::MAX_ISSUES);
    assert_eq!(v.treatment(), Treatment::SessionReset);
    let n = v.notification().expect("a reset names its NOTIFICATION");
    assert_eq!(n.code.0, 3);
}

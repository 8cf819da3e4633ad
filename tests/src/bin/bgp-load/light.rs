//! A receiver's short reading of an UPDATE: the checks that exact counting needs, without
//! the attribute-by-attribute checks of RFC 7606.
//!
//! With 100 receivers of a million prefixes, the full parse of every UPDATE by every
//! receiver ([`bgp_wire::update::UpdateView::parse`], then an `IpNet` per prefix) was
//! most of the load tool's CPU, on the two cores the reflector under test needs. The
//! receivers of one run get the same attributes from the target, so one receiver (the
//! first) parses every UPDATE in full, and the others read an UPDATE this way when it
//! allows: lengths that fit the message, an attribute list that frames exactly, no
//! attribute twice, the mandatory ones present beside announced prefixes, no NLRI outside
//! the base fields (MP_REACH_NLRI / MP_UNREACH_NLRI), and every prefix of both fields
//! well formed. Anything else goes the full way, and its faults are reported as before.
//! Every prefix is still counted, exactly, by every receiver.

/// The prefixes of an UPDATE the short reading accepted, each as the load tool's key
/// (address with its host bits cleared, then length: [`crate::generate::Prefix::key`]).
/// A receiver keeps one and refills it for every UPDATE.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    /// The Withdrawn Routes field's prefixes.
    pub(crate) withdrawn: Vec<u64>,
    /// The NLRI field's prefixes.
    pub(crate) announced: Vec<u64>,
}

/// The base fields of an UPDATE whose framing the short reading accepted.
struct Plain<'a> {
    withdrawn: &'a [u8],
    nlri: &'a [u8],
}

const ORIGIN: u8 = 1;
const AS_PATH: u8 = 2;
const NEXT_HOP: u8 = 3;
const LOCAL_PREF: u8 = 5;
const MP_REACH_NLRI: u8 = 14;
const MP_UNREACH_NLRI: u8 = 15;
const EXTENDED_LENGTH: u8 = 0x10;

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// Reads `body` (an UPDATE without its header) the short way into `keys`, when the short
/// reading accepts it (see the module's documentation); `false` sends it the full way,
/// and `keys` is then not to be used.
pub(crate) fn read(body: &[u8], ibgp: bool, keys: &mut Keys) -> bool {
    let Some(p) = plain(body, ibgp) else {
        return false;
    };
    keys.withdrawn.clear();
    keys.announced.clear();
    read_field(p.withdrawn, &mut keys.withdrawn) && read_field(p.nlri, &mut keys.announced)
}

/// The base fields of `body` when its lengths and attribute list frame as the short
/// reading needs; the prefixes are checked as they are read ([`read_field`]).
fn plain(body: &[u8], ibgp: bool) -> Option<Plain<'_>> {
    if body.len() < 4 {
        return None;
    }
    let wlen = be16(body, 0);
    if 2 + wlen + 2 > body.len() {
        return None;
    }
    let tpal = be16(body, 2 + wlen);
    let attrs_at = 4 + wlen;
    if attrs_at + tpal > body.len() {
        return None;
    }
    let attrs = &body[attrs_at..attrs_at + tpal];
    // Attribute types seen, in a register: a type above 63 (none that the load tool's
    // table carries) goes the full way.
    let mut seen = 0u64;
    let mut pos = 0;
    while pos < attrs.len() {
        let rest = &attrs[pos..];
        if rest.len() < 3 {
            return None;
        }
        let (flags, ty) = (rest[0], rest[1]);
        let (head, len) = if flags & EXTENDED_LENGTH != 0 {
            if rest.len() < 4 {
                return None;
            }
            (4, be16(rest, 2))
        } else {
            (3, usize::from(rest[2]))
        };
        if matches!(ty, MP_REACH_NLRI | MP_UNREACH_NLRI) {
            return None;
        }
        if ty > 63 || seen & 1 << ty != 0 {
            return None;
        }
        seen |= 1 << ty;
        pos += head + len;
    }
    if pos != attrs.len() {
        return None;
    }
    let withdrawn = &body[2..2 + wlen];
    let nlri = &body[attrs_at + tpal..];
    let has = |ty: u8| seen & 1 << ty != 0;
    let mandatory = has(ORIGIN) && has(AS_PATH) && has(NEXT_HOP) && (!ibgp || has(LOCAL_PREF));
    if !nlri.is_empty() && !mandatory {
        return None;
    }
    Some(Plain { withdrawn, nlri })
}

/// Appends the prefixes of `field` to `out` as keys, in one pass: `false` unless the field
/// is a sequence of IPv4 prefixes (RFC 4271 §4.3: a length of at most 32, then as many
/// octets as it needs), nothing left over.
fn read_field(mut field: &[u8], out: &mut Vec<u64>) -> bool {
    while let Some((&len, rest)) = field.split_first() {
        let n = usize::from(len).div_ceil(8);
        if len > 32 || rest.len() < n {
            return false;
        }
        // Four octets read at once where the field has them (the mask clears what lies
        // past the prefix); a copy into a small array cost a call and a stalled load per
        // prefix.
        let word = match rest.get(..4) {
            Some(w) => u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
            None => rest[..n]
                .iter()
                .enumerate()
                .fold(0, |a, (i, &b)| a | u32::from(b) << (24 - 8 * i)),
        };
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        out.push(u64::from(word & mask) << 8 | u64::from(len));
        field = &rest[n..];
    }
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use bgp_wire::attr::{AsPath, Origin, PathAttribute};
    use bgp_wire::nlri::Nlri;
    use bgp_wire::update::{Treatment, Update, UpdateView};
    use bgp_wire::{Family, FamilySet, SessionCtx};
    use bytes::BytesMut;

    use super::*;
    use crate::generate::Prefix;

    /// An iBGP IPv4 session, as the load tool's receivers have (the stats tests too).
    pub(crate) fn ctx() -> SessionCtx {
        SessionCtx {
            ibgp: true,
            families: FamilySet::only(Family::Ipv4Unicast),
            ..SessionCtx::default()
        }
    }

    fn body(withdrawn: &[&str], nlri: &[&str], attributes: Vec<PathAttribute>) -> Vec<u8> {
        let n = |v: &[&str]| v.iter().map(|p| Nlri::new(p.parse().unwrap())).collect();
        let u = Update {
            withdrawn: n(withdrawn),
            attributes,
            nlri: n(nlri),
        };
        let mut out = BytesMut::new();
        u.encode(&ctx(), &mut out).unwrap();
        out[19..].to_vec()
    }

    fn attrs() -> Vec<PathAttribute> {
        vec![
            PathAttribute::Origin(Origin::IGP),
            PathAttribute::AsPath(AsPath::default()),
            PathAttribute::NextHop("192.0.2.1".parse().unwrap()),
            PathAttribute::LocalPref(100),
        ]
    }

    fn key(p: &str) -> u64 {
        let n: ipnet::Ipv4Net = p.parse().unwrap();
        Prefix {
            addr: u32::from(n.network()),
            len: n.prefix_len(),
        }
        .key()
    }

    /// Whether the short reading accepts `b`, and the keys it read.
    fn read_keys(b: &[u8], ibgp: bool) -> Option<Keys> {
        let mut k = Keys::default();
        read(b, ibgp, &mut k).then_some(k)
    }

    #[test]
    fn test_plain_keys_are_the_full_parse_prefixes() {
        let w = ["203.0.113.0/24", "0.0.0.0/0", "198.51.0.0/16"];
        let a = [
            "192.0.2.0/25",
            "10.0.0.0/8",
            "198.51.100.7/32",
            "100.64.0.0/10",
        ];
        let b = body(&w, &a, attrs());
        let mut k = read_keys(&b, true).unwrap();
        let full = UpdateView::parse(&b, &ctx());
        assert_eq!(full.treatment(), Treatment::Normal);
        let ipv4 = |n: Nlri| match n.prefix {
            ipnet::IpNet::V4(p) => key(&p.to_string()),
            ipnet::IpNet::V6(_) => unreachable!(),
        };
        assert_eq!(
            k.withdrawn,
            full.withdrawals().map(ipv4).collect::<Vec<_>>()
        );
        assert_eq!(k.announced, full.announced().map(ipv4).collect::<Vec<_>>());
        assert_eq!(k.announced[0], key("192.0.2.0/25"));
        // Refilled, not appended to: only withdrawals (no attributes), and End-of-RIB.
        let b = body(&w, &[], Vec::new());
        assert!(read(&b, true, &mut k));
        assert_eq!((k.withdrawn.len(), k.announced.len()), (3, 0));
        assert!(read(&[0, 0, 0, 0], true, &mut k));
        assert_eq!((k.withdrawn.len(), k.announced.len()), (0, 0));
    }

    #[test]
    fn test_plain_host_bits_are_cleared() {
        // 192.0.2.129/25 on the wire: the key is that of 192.0.2.128/25.
        let f = [25u8, 192, 0, 2, 129 | 1];
        let mut out = Vec::new();
        assert!(read_field(&f, &mut out));
        assert_eq!(out, [key("192.0.2.128/25")]);
    }

    #[test]
    fn test_plain_sends_the_rest_the_full_way() {
        let a = ["192.0.2.0/24"];
        let ok = body(&[], &a, attrs());
        assert!(read_keys(&ok, true).is_some());
        // LOCAL_PREF is mandatory only on iBGP.
        let no_lp = body(&[], &a, attrs()[..3].to_vec());
        assert!(read_keys(&no_lp, true).is_none());
        assert!(read_keys(&no_lp, false).is_some());
        let no_nh = body(&[], &a, vec![attrs()[0].clone(), attrs()[1].clone()]);
        assert!(read_keys(&no_nh, false).is_none());
        // Truncated anywhere but between two fields (the last 4 octets are the NLRI
        // field, one /24: without it the update is whole), or one octet too many in the
        // attribute list.
        for cut in (0..ok.len()).filter(|&c| c != ok.len() - 4) {
            assert!(read_keys(&ok[..cut], true).is_none(), "cut at {cut}");
        }
        let mut long_attrs = ok.clone();
        let tpal = be16(&long_attrs, 2) + 1;
        long_attrs[2..4].copy_from_slice(&(tpal as u16).to_be_bytes());
        assert!(read_keys(&long_attrs, true).is_none());
        // A prefix longer than 32, an attribute twice, MP_UNREACH_NLRI.
        let mut bad = ok.clone();
        let at = bad.len() - 4;
        bad[at] = 33;
        assert!(read_keys(&bad, true).is_none());
        let mut twice = attrs();
        twice.push(PathAttribute::LocalPref(200));
        let twice = body(&[], &a, twice);
        assert!(read_keys(&twice, true).is_none());
        let mp_unreach = [0, 0, 0, 7, 0x90, 15, 0, 3, 0, 2, 1];
        assert!(read_keys(&mp_unreach, true).is_none());
    }
}

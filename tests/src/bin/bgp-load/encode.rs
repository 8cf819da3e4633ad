//! Encoding what the sessions send: the generated table packed into UPDATEs with bgp-wire's
//! `UpdatePacker` (every message within the session's maximum, 4096 bytes here), its
//! End-of-RIB, the withdrawal of the whole table, and a fabric client's one block.

use std::net::Ipv4Addr;

use bgp_wire::attr::{AsPath, PathAttribute};
use bgp_wire::update::{Update, UpdatePacker};
use bgp_wire::{Family, SessionCtx};
use bytes::{Bytes, BytesMut};
use ipnet::IpNet;

use crate::generate::{AttrSet, Table};

/// LOCAL_PREF on internal sessions (RFC 4271 §5.1.5: every iBGP UPDATE carries one).
const LOCAL_PREF: u32 = 100;

/// What encoding needs besides the table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sender {
    /// The session's negotiated context.
    pub(crate) ctx: SessionCtx,
    /// Our AS, prepended on external sessions (RFC 4271 §5.1.2).
    pub(crate) local_as: u32,
    pub(crate) next_hop: Ipv4Addr,
}

/// A byte stream of whole messages and how many there are.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stream {
    pub(crate) bytes: Bytes,
    pub(crate) messages: usize,
}

impl Sender {
    /// The path attributes of `set`, encoded, in type code order.
    fn attrs(&self, set: &AttrSet, out: &mut BytesMut) {
        let mut path = set.as_path.clone();
        if !self.ctx.ibgp {
            path.insert(0, self.local_as);
        }
        let mut list = vec![
            PathAttribute::Origin(set.origin),
            PathAttribute::AsPath(AsPath::from_sequence(path)),
            PathAttribute::NextHop(self.next_hop),
        ];
        if let Some(med) = set.med {
            list.push(PathAttribute::MultiExitDisc(med));
        }
        if self.ctx.ibgp {
            list.push(PathAttribute::LocalPref(LOCAL_PREF));
        }
        if !set.communities.is_empty() {
            list.push(PathAttribute::Communities(set.communities.clone()));
        }
        for a in &list {
            a.encode(&self.ctx, out);
        }
    }

    /// The whole table, group by group, then the IPv4 unicast End-of-RIB (RFC 4724 §2).
    pub(crate) fn announce_table(&self, table: &Table) -> Result<Stream, String> {
        let packer = UpdatePacker::new(&self.ctx);
        // About 60 bytes per group of about 4.5 prefixes; reserve once.
        let mut out = BytesMut::with_capacity(table.groups.len() * 64 + 64);
        let mut attrs = BytesMut::with_capacity(256);
        let mut messages = 0;
        for g in &table.groups {
            attrs.clear();
            self.attrs(&g.attrs, &mut attrs);
            let nlri: Vec<_> = table.prefixes[g.start as usize..g.end as usize]
                .iter()
                .map(|p| bgp_wire::nlri::Nlri::new(IpNet::V4(p.net())))
                .collect();
            messages += packer
                .announce(Family::Ipv4Unicast, &attrs, None, &nlri, &mut out)
                .map_err(|e| format!("encoding the table: {e}"))?;
        }
        messages += end_of_rib(&self.ctx, &mut out)?;
        Ok(Stream {
            bytes: out.freeze(),
            messages,
        })
    }

    /// One prefix with a plain attribute set (ORIGIN IGP, empty AS_PATH on iBGP), then
    /// End-of-RIB: what a fabric client announces.
    pub(crate) fn announce_one(&self, prefix: ipnet::Ipv4Net) -> Result<Stream, String> {
        let set = AttrSet {
            origin: bgp_wire::attr::Origin::IGP,
            as_path: Vec::new(),
            med: None,
            communities: Vec::new(),
        };
        let mut attrs = BytesMut::new();
        self.attrs(&set, &mut attrs);
        let nlri = [bgp_wire::nlri::Nlri::new(IpNet::V4(prefix))];
        let mut out = BytesMut::new();
        let mut messages = UpdatePacker::new(&self.ctx)
            .announce(Family::Ipv4Unicast, &attrs, None, &nlri, &mut out)
            .map_err(|e| format!("encoding {prefix}: {e}"))?;
        messages += end_of_rib(&self.ctx, &mut out)?;
        Ok(Stream {
            bytes: out.freeze(),
            messages,
        })
    }
}

fn end_of_rib(ctx: &SessionCtx, out: &mut BytesMut) -> Result<usize, String> {
    Update::end_of_rib(Family::Ipv4Unicast)
        .encode(ctx, out)
        .map_err(|e| format!("encoding End-of-RIB: {e}"))?;
    Ok(1)
}

/// Withdrawals of the whole table, packed as tightly as the session allows.
pub(crate) fn withdraw_table(ctx: &SessionCtx, table: &Table) -> Result<Stream, String> {
    let nlri: Vec<_> = table
        .prefixes
        .iter()
        .map(|p| bgp_wire::nlri::Nlri::new(IpNet::V4(p.net())))
        .collect();
    let mut out = BytesMut::with_capacity(nlri.len() * 4 + 64);
    let messages = UpdatePacker::new(ctx)
        .withdraw(Family::Ipv4Unicast, &nlri, &mut out)
        .map_err(|e| format!("encoding the withdrawals: {e}"))?;
    Ok(Stream {
        bytes: out.freeze(),
        messages,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bgp_wire::update::{Treatment, UpdateView};
    use bgp_wire::{Framer, MessageType, UpdatePolicy};

    use super::*;
    use crate::generate::Prefix;

    fn ctx() -> SessionCtx {
        SessionCtx {
            ibgp: true,
            families: bgp_wire::FamilySet::only(Family::Ipv4Unicast),
            policy: UpdatePolicy {
                reject_martian_next_hop: false,
                ..UpdatePolicy::default()
            },
            ..SessionCtx::default()
        }
    }

    fn sender() -> Sender {
        Sender {
            ctx: ctx(),
            local_as: 65000,
            next_hop: Ipv4Addr::new(127, 0, 1, 1),
        }
    }

    fn prefix_of(n: &bgp_wire::nlri::Nlri) -> Prefix {
        match n.prefix {
            IpNet::V4(p) => Prefix {
                addr: u32::from(p.network()),
                len: p.prefix_len(),
            },
            IpNet::V6(p) => panic!("IPv6 {p}"),
        }
    }

    #[test]
    fn test_table_packs_within_4096_and_decodes_back() {
        let table = Table::generate(20_000, 5, &[65000]).unwrap();
        let s = sender().announce_table(&table).unwrap();
        let attrs_of: HashMap<u64, &AttrSet> = table
            .groups
            .iter()
            .flat_map(|g| {
                table.prefixes[g.start as usize..g.end as usize]
                    .iter()
                    .map(move |p| (p.key(), &g.attrs))
            })
            .collect();
        let mut got = Vec::new();
        let mut frames = 0;
        let mut eor = 0;
        for f in Framer::new().frames(s.bytes.clone()) {
            let f = f.unwrap();
            frames += 1;
            assert_eq!(f.ty, MessageType::UPDATE);
            assert!(f.bytes.len() <= 4096, "{} bytes", f.bytes.len());
            let v = UpdateView::parse(f.body(), &ctx());
            assert_eq!(v.treatment(), Treatment::Normal, "{:?}", v.issues());
            if v.end_of_rib().is_some() {
                eor += 1;
                continue;
            }
            assert_eq!(v.next_hop(), Some(Ipv4Addr::new(127, 0, 1, 1)));
            assert_eq!(v.local_pref(), Some(LOCAL_PREF));
            let path: Vec<u32> = v.as_path().unwrap().to_owned_path().segments[0]
                .asns
                .clone();
            for n in v.announced() {
                let p = prefix_of(&n);
                let want = attrs_of[&p.key()];
                assert_eq!(v.origin(), Some(want.origin));
                assert_eq!(path, want.as_path);
                assert_eq!(v.med(), want.med);
                assert_eq!(v.communities().collect::<Vec<_>>(), want.communities);
                got.push(p);
            }
        }
        assert_eq!(frames, s.messages);
        assert_eq!(eor, 1, "one End-of-RIB, last");
        assert_eq!(got, table.prefixes, "every prefix once, in order");
    }

    #[test]
    fn test_withdrawals_fill_messages_up_to_4096() {
        let table = Table::generate(20_000, 6, &[]).unwrap();
        let s = withdraw_table(&ctx(), &table).unwrap();
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        for f in Framer::new().frames(s.bytes.clone()) {
            let f = f.unwrap();
            sizes.push(f.bytes.len());
            let v = UpdateView::parse(f.body(), &ctx());
            assert_eq!(v.treatment(), Treatment::Normal);
            assert_eq!(v.announced().count(), 0);
            got.extend(v.withdrawals().map(|n| prefix_of(&n)));
        }
        assert_eq!(got, table.prefixes);
        assert_eq!(sizes.len(), s.messages);
        assert!(sizes.iter().all(|&n| n <= 4096), "{sizes:?}");
        // All but the last are full to within one prefix.
        assert!(
            sizes[..sizes.len() - 1].iter().all(|&n| n > 4096 - 5),
            "{sizes:?}"
        );
        // About 20 000 prefixes of 4 bytes in 4050-byte bodies.
        assert!(s.messages <= 20, "{}", s.messages);
    }

    #[test]
    fn test_ebgp_prepends_our_as_and_drops_local_pref() {
        let mut tx = sender();
        tx.ctx.ibgp = false;
        let table = Table::generate(10, 1, &[65000]).unwrap();
        let s = tx.announce_table(&table).unwrap();
        let f = Framer::new().frames(s.bytes).next().unwrap().unwrap();
        let mut rx = ctx();
        rx.ibgp = false;
        let v = UpdateView::parse(f.body(), &rx);
        assert_eq!(v.treatment(), Treatment::Normal, "{:?}", v.issues());
        assert_eq!(v.local_pref(), None);
        let path = v.as_path().unwrap().to_owned_path();
        assert_eq!(path.first_as(), Some(65000));
    }

    #[test]
    fn test_fabric_block() {
        let p: ipnet::Ipv4Net = "100.64.0.64/26".parse().unwrap();
        let s = sender().announce_one(p).unwrap();
        assert_eq!(s.messages, 2);
        let frames: Vec<_> = Framer::new().frames(s.bytes).map(Result::unwrap).collect();
        let v = UpdateView::parse(frames[0].body(), &ctx());
        assert_eq!(v.treatment(), Treatment::Normal, "{:?}", v.issues());
        let n: Vec<_> = v.announced().collect();
        assert_eq!(n, [bgp_wire::nlri::Nlri::new(IpNet::V4(p))]);
        assert!(
            UpdateView::parse(frames[1].body(), &ctx())
                .end_of_rib()
                .is_some()
        );
    }
}

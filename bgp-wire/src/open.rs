//! OPEN (RFC 4271 §4.2) with capabilities (RFC 5492) and extended optional parameters
//! (RFC 9072).
//!
//! [`OpenView::new`] checks everything RFC 4271 §6.2 and the capability RFCs ask of a
//! received OPEN in one pass, so its accessors and iterators cannot fail afterwards. What
//! depends on configuration (the expected peer AS, our own identifier) is left to
//! [`OpenView::check_peer`], which the FSM calls.

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};
use serde::Serialize;

use crate::capability::{Capability, CapabilityCode, CapabilityView, check_value};
use crate::error::{DecodeError, ErrorKind};
use crate::header::{HEADER_LEN, MessageType, begin_message, finish_header};

/// The only BGP version (RFC 4271 §4.2).
pub const BGP_VERSION: u8 = 4;
// The 2-octet AS a 4-octet-only speaker puts in My Autonomous System (RFC 6793 §9).
pub use crate::attr::as_path::AS_TRANS;
/// Optional parameter type of capabilities (RFC 5492 §4).
pub const PARAM_CAPABILITIES: u8 = 2;

/// Length of the fixed part of the body: version, My AS, hold time, identifier, length.
const FIXED_LEN: usize = 10;
/// RFC 9072 §2: Non-Ext OP Len and Non-Ext OP Type both 255 announce the extended form.
const EXTENDED_MARK: u8 = 255;
/// Largest classic optional parameters length.
const MAX_CLASSIC_PARAMS: usize = 255;

// Offsets of the fixed fields from the start of the message, for errors.
const OFF_VERSION: usize = HEADER_LEN;
const OFF_MY_AS: usize = HEADER_LEN + 1;
const OFF_HOLD: usize = HEADER_LEN + 3;
const OFF_BGP_ID: usize = HEADER_LEN + 5;
const OFF_OPT_LEN: usize = HEADER_LEN + 9;
const OFF_PARAMS: usize = HEADER_LEN + FIXED_LEN;

fn malformed(offset: usize, why: &'static str) -> DecodeError {
    DecodeError::new(offset, ErrorKind::MalformedOpen(why))
}

/// One optional parameter.
#[derive(Clone, Copy)]
struct Param<'a> {
    ty: u8,
    value: &'a [u8],
    /// Message offset of the value.
    offset: usize,
}

/// Iterates the optional parameters: type, then a length of one octet (or two in the RFC
/// 9072 form), then the value. Each length is checked against the bytes left before it is
/// used; after the first error the iterator is exhausted.
struct Params<'a> {
    rest: &'a [u8],
    offset: usize,
    extended: bool,
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<Param<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&ty, after_ty) = self.rest.split_first()?;
        let len_size = if self.extended { 2 } else { 1 };
        let parsed = after_ty.split_at_checked(len_size).and_then(|(len, rest)| {
            let len = match *len {
                [l] => usize::from(l),
                [l0, l1] => usize::from(u16::from_be_bytes([l0, l1])),
                _ => return None,
            };
            rest.split_at_checked(len)
        });
        let Some((value, rest)) = parsed else {
            self.rest = &[];
            // RFC 4271 §6.2 gives no subcode for a parameter that overruns: 2/0.
            return Some(Err(malformed(
                self.offset + 1,
                "optional parameter length overruns the optional parameters",
            )));
        };
        let item = Param {
            ty,
            value,
            offset: self.offset + 1 + len_size,
        };
        self.offset += 1 + len_size + value.len();
        self.rest = rest;
        Some(Ok(item))
    }
}

/// Iterates the capabilities of one capabilities parameter (RFC 5492 §4); the capability
/// length stays one octet in the RFC 9072 form. Fused after the first error.
struct Caps<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Caps<'a> {
    /// The capability and the message offset of its code octet.
    type Item = Result<(CapabilityView<'a>, usize), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&code, after_code) = self.rest.split_first()?;
        let parsed = after_code
            .split_first()
            .and_then(|(&len, rest)| rest.split_at_checked(usize::from(len)));
        let Some((value, rest)) = parsed else {
            self.rest = &[];
            return Some(Err(malformed(
                self.offset + 1,
                "capability length overruns its optional parameter",
            )));
        };
        let at = self.offset;
        self.offset += 2 + value.len();
        self.rest = rest;
        let view = CapabilityView {
            code: CapabilityCode(code),
            value,
        };
        Some(Ok((view, at)))
    }
}

/// A received OPEN, borrowed and validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenView<'a> {
    version: u8,
    my_as: u16,
    hold_time: u16,
    bgp_id: Ipv4Addr,
    /// The optional parameters, without Opt Parm Len (or the RFC 9072 prefix).
    params: &'a [u8],
    extended: bool,
    /// The 4-octet AS capability's value, if one was sent.
    as4: Option<u32>,
}

impl<'a> OpenView<'a> {
    /// Validates the body of an OPEN (the bytes after the 19-byte header, as
    /// [`crate::Frame::body`] gives them).
    ///
    /// Errors map to the NOTIFICATION RFC 4271 §6.2 asks for:
    /// * version other than 4: 2/1 with data `0004`;
    /// * hold time 1 or 2: 2/6 (0 is legal: no keepalives);
    /// * BGP identifier 0.0.0.0: 2/3;
    /// * an optional parameter other than capabilities: 2/4;
    /// * any length that does not match the bytes present (Opt Parm Len, a parameter, a
    ///   capability, the RFC 9072 extended length), or a known capability with a length its
    ///   RFC does not allow: 2/0;
    /// * BGP roles that disagree (RFC 9234 §4.2): 2/11;
    /// * My AS other than AS_TRANS and different from the 4-octet AS capability
    ///   (RFC 6793 §4.1), 4-octet AS capabilities that disagree, or AS 0 (RFC 7607 §2): 2/2.
    ///
    /// Unknown capabilities are accepted and kept (RFC 5492 §5).
    pub fn new(body: &'a [u8]) -> Result<Self, DecodeError> {
        let Some((&fixed, rest)) = body.split_first_chunk::<FIXED_LEN>() else {
            // The framer guarantees 29 bytes; this is only reachable by direct calls.
            let length = u16::try_from(HEADER_LEN + body.len()).unwrap_or(u16::MAX);
            return Err(DecodeError::new(16, ErrorKind::BadLength { length }));
        };
        let [version, a0, a1, h0, h1, i0, i1, i2, i3, opt_len] = fixed;
        if version != BGP_VERSION {
            return Err(DecodeError::new(
                OFF_VERSION,
                ErrorKind::UnsupportedVersion { version },
            ));
        }
        let hold_time = u16::from_be_bytes([h0, h1]);
        if matches!(hold_time, 1 | 2) {
            return Err(DecodeError::new(
                OFF_HOLD,
                ErrorKind::UnacceptableHoldTime { hold: hold_time },
            ));
        }
        let bgp_id = Ipv4Addr::new(i0, i1, i2, i3);
        if bgp_id.is_unspecified() {
            return Err(DecodeError::new(
                OFF_BGP_ID,
                ErrorKind::BadBgpIdentifier { id: bgp_id },
            ));
        }
        let (params, extended) = split_params(opt_len, rest)?;
        let mut view = Self {
            version,
            my_as: u16::from_be_bytes([a0, a1]),
            hold_time,
            bgp_id,
            params,
            extended,
            as4: None,
        };
        view.validate_params()?;
        view.check_as()?;
        Ok(view)
    }

    /// Checks every optional parameter and capability, and records the 4-octet AS.
    fn validate_params(&mut self) -> Result<(), DecodeError> {
        let mut role = None;
        for param in self.raw_params() {
            let param = param?;
            if param.ty != PARAM_CAPABILITIES {
                return Err(DecodeError::new(
                    param
                        .offset
                        .saturating_sub(if self.extended { 3 } else { 2 }),
                    ErrorKind::UnsupportedOptionalParameter { ty: param.ty },
                ));
            }
            for cap in caps(param) {
                let (cap, at) = cap?;
                check_value(cap.code, cap.value).map_err(|why| malformed(at, why))?;
                match (cap.code, cap.value) {
                    (CapabilityCode::FOUR_OCTET_AS, &[b0, b1, b2, b3]) => {
                        let asn = u32::from_be_bytes([b0, b1, b2, b3]);
                        // RFC 6793 does not say which of several values counts; refuse to
                        // guess the peer's AS.
                        if self.as4.is_some_and(|first| first != asn) {
                            return Err(DecodeError::new(at, ErrorKind::BadPeerAs { asn }));
                        }
                        self.as4 = Some(asn);
                    }
                    // RFC 9234 §4.2: several Role capabilities must all agree.
                    (CapabilityCode::BGP_ROLE, &[r]) => {
                        if role.is_some_and(|first| first != r) {
                            return Err(DecodeError::new(at, ErrorKind::RoleMismatch));
                        }
                        role = Some(r);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// RFC 6793 §4.1 and RFC 7607 §2 checks of the AS the peer claims.
    fn check_as(&self) -> Result<(), DecodeError> {
        if let Some(asn) = self.as4
            && self.my_as != AS_TRANS
            && u32::from(self.my_as) != asn
        {
            return Err(DecodeError::new(
                OFF_MY_AS,
                ErrorKind::BadPeerAs {
                    asn: u32::from(self.my_as),
                },
            ));
        }
        if self.asn() == 0 {
            return Err(DecodeError::new(OFF_MY_AS, ErrorKind::BadPeerAs { asn: 0 }));
        }
        Ok(())
    }

    fn raw_params(&self) -> Params<'a> {
        Params {
            rest: self.params,
            offset: OFF_PARAMS + if self.extended { 3 } else { 0 },
            extended: self.extended,
        }
    }

    /// The version, always 4 once validated.
    pub const fn version(&self) -> u8 {
        self.version
    }

    /// The My Autonomous System field as sent: AS_TRANS (23456) for a peer whose AS needs
    /// four octets.
    pub const fn my_as_field(&self) -> u16 {
        self.my_as
    }

    /// The peer's AS: the 4-octet AS capability's if present, else the 2-octet field.
    pub fn asn(&self) -> u32 {
        self.as4.unwrap_or(u32::from(self.my_as))
    }

    /// The proposed hold time in seconds (0, or at least 3).
    pub const fn hold_time(&self) -> u16 {
        self.hold_time
    }

    /// The BGP identifier (never 0.0.0.0).
    pub const fn bgp_id(&self) -> Ipv4Addr {
        self.bgp_id
    }

    /// Whether the optional parameters came in the RFC 9072 extended form.
    pub const fn extended_params(&self) -> bool {
        self.extended
    }

    /// The capabilities in the order received, across all capabilities parameters.
    pub fn capabilities(&self) -> impl Iterator<Item = CapabilityView<'a>> + use<'a> {
        // Validation already walked these bytes, so no item is an error.
        self.raw_params()
            .filter_map(Result::ok)
            .filter(|p| p.ty == PARAM_CAPABILITIES)
            .flat_map(caps)
            .filter_map(|c| c.ok().map(|(view, _)| view))
    }

    /// Whether the peer sent a capability with `code`.
    pub fn has_capability(&self, code: CapabilityCode) -> bool {
        self.capabilities().any(|c| c.code == code)
    }

    /// Checks the OPEN against configuration (RFC 4271 §6.2): the peer's AS must be
    /// `expected_as` (else 2/2), and on iBGP its identifier must differ from `local_id`
    /// (else 2/3; RFC 6286 §2.2 allows equal identifiers between different ASes).
    pub fn check_peer(
        &self,
        expected_as: u32,
        local_id: Ipv4Addr,
        ibgp: bool,
    ) -> Result<(), DecodeError> {
        let asn = self.asn();
        if asn != expected_as {
            return Err(DecodeError::new(OFF_MY_AS, ErrorKind::BadPeerAs { asn }));
        }
        if ibgp && self.bgp_id == local_id {
            return Err(DecodeError::new(
                OFF_BGP_ID,
                ErrorKind::BadBgpIdentifier { id: self.bgp_id },
            ));
        }
        Ok(())
    }
}

fn caps(param: Param<'_>) -> Caps<'_> {
    Caps {
        rest: param.value,
        offset: param.offset,
    }
}

/// Finds the optional parameters after the fixed part, in the classic form or the RFC 9072
/// extended form, and checks that their length is exactly what remains of the body.
fn split_params(opt_len: u8, rest: &[u8]) -> Result<(&[u8], bool), DecodeError> {
    // RFC 9072 §2: the extended form is recognised by both octets, and MUST be accepted even
    // when its length would have fitted the classic form.
    if opt_len == EXTENDED_MARK && rest.first() == Some(&EXTENDED_MARK) {
        let Some((&len, params)) = rest.get(1..).and_then(<[u8]>::split_first_chunk::<2>) else {
            return Err(malformed(
                OFF_PARAMS + 1,
                "message ends inside the extended optional parameters length",
            ));
        };
        if params.len() != usize::from(u16::from_be_bytes(len)) {
            return Err(malformed(
                OFF_PARAMS + 1,
                "extended optional parameters length does not match the message",
            ));
        }
        return Ok((params, true));
    }
    if rest.len() != usize::from(opt_len) {
        return Err(malformed(
            OFF_OPT_LEN,
            "optional parameters length does not match the message",
        ));
    }
    Ok((rest, false))
}

/// An OPEN, owned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Open {
    /// The speaker's AS. Above 65535 it is sent as AS_TRANS in My Autonomous System, and
    /// [`Capability::FourOctetAs`] must carry it (RFC 6793 §4.1).
    pub asn: u32,
    /// Proposed hold time in seconds (RFC 4271 §4.2: 0 or at least 3).
    pub hold_time: u16,
    /// BGP identifier.
    pub bgp_id: Ipv4Addr,
    /// Capabilities, in the order sent.
    pub capabilities: Vec<Capability>,
}

impl From<&OpenView<'_>> for Open {
    fn from(v: &OpenView<'_>) -> Self {
        Self {
            asn: v.asn(),
            hold_time: v.hold_time(),
            bgp_id: v.bgp_id(),
            // Validation decoded every capability once already, so none is dropped here.
            capabilities: v.capabilities().filter_map(|c| c.decode().ok()).collect(),
        }
    }
}

impl Open {
    /// Validates and decodes the body of an OPEN (after the header); see [`OpenView::new`].
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        OpenView::new(body).map(|v| Self::from(&v))
    }

    /// Total encoded length of the capabilities, without a parameter header.
    fn capabilities_len(&self) -> usize {
        self.capabilities.iter().map(Capability::encoded_len).sum()
    }

    /// Whether the capabilities fit one classic parameter: its 2-octet header plus the
    /// capabilities within the 255 of Opt Parm Len.
    fn fits_classic(caps_len: usize) -> bool {
        caps_len + 2 <= MAX_CLASSIC_PARAMS
    }

    /// Length of the optional parameters, with Opt Parm Len but without the fixed part.
    fn params_len(&self) -> usize {
        match self.capabilities_len() {
            0 => 0,
            n if Self::fits_classic(n) => 2 + n,
            // Non-Ext OP Len, Non-Ext OP Type, Extended length; then type and 2-octet length.
            n => 3 + 3 + n,
        }
    }

    /// Length of the whole encoded message, header included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + FIXED_LEN + self.params_len()
    }

    /// Appends the whole message, header included, to `out`.
    ///
    /// All capabilities go in one capabilities parameter; when that does not fit the
    /// classic 255-byte optional parameters, the RFC 9072 form is used. An OPEN may not
    /// exceed 4096 bytes even with extended messages (RFC 8654 §3): keeping the capability
    /// list within that is the caller's business.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = begin_message(out, MessageType::OPEN);
        out.put_u8(BGP_VERSION);
        out.put_u16(crate::attr::as_path::two_octet(self.asn));
        out.put_u16(self.hold_time);
        out.put_slice(&self.bgp_id.octets());
        let caps_len = self.capabilities_len();
        if caps_len == 0 {
            out.put_u8(0);
        } else if Self::fits_classic(caps_len) {
            out.put_u8((caps_len + 2) as u8);
            out.put_u8(PARAM_CAPABILITIES);
            out.put_u8(caps_len as u8);
        } else {
            debug_assert!(caps_len + 3 <= usize::from(u16::MAX));
            out.put_u8(EXTENDED_MARK);
            out.put_u8(EXTENDED_MARK);
            out.put_u16((caps_len + 3) as u16);
            out.put_u8(PARAM_CAPABILITIES);
            out.put_u16(caps_len as u16);
        }
        for cap in &self.capabilities {
            cap.encode(out);
        }
        finish_header(out, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::{
        AddPathEntry, AddPathMode, BgpRole, ExtendedNextHopEntry, GrFamily, GracefulRestart,
        LlgrFamily,
    };
    use crate::ctx::{Afi, Safi};
    use crate::header::Framer;
    use crate::notification::Notification;
    use bytes::Bytes;
    use hex_literal::hex;

    const BASE: [u8; 45] = hex!(
        "ffffffffffffffffffffffffffffffff 002D 01"
        "04 FDE9 005A C0000201 10"
        "02 06 01 04 0001 00 01"
        "02 06 41 04 0000FDE9"
    );

    /// Frames `msg` as the session would (header checks included) and validates the body.
    fn parse(msg: &[u8]) -> Result<OpenView<'_>, DecodeError> {
        let frame = Framer::new()
            .next_frame(&mut BytesMut::from(msg))
            .expect("header")
            .expect("whole message");
        assert_eq!(frame.ty, MessageType::OPEN);
        assert_eq!(frame.bytes.len(), msg.len(), "header length = bytes sent");
        OpenView::new(&msg[HEADER_LEN..])
    }

    /// `BASE` with `body` after the header and the header length fixed up.
    fn msg(body: &[u8]) -> Vec<u8> {
        let mut m = BASE[..HEADER_LEN].to_vec();
        m.extend_from_slice(body);
        let len = (m.len() as u16).to_be_bytes();
        m[16..18].copy_from_slice(&len);
        m
    }

    fn notif(e: &DecodeError) -> (u8, u8, Vec<u8>) {
        let n = Notification::from(e);
        (n.code.0, n.subcode, n.data.to_vec())
    }

    fn reject(m: &[u8]) -> (u8, u8, Vec<u8>) {
        notif(&parse(m).expect_err("must be rejected"))
    }

    #[test]
    fn base_open_parses() {
        let v = parse(&BASE).unwrap();
        assert_eq!(v.version(), 4);
        assert_eq!(v.my_as_field(), 65001);
        assert_eq!(v.asn(), 65001);
        assert_eq!(v.hold_time(), 90);
        assert_eq!(v.bgp_id(), Ipv4Addr::new(192, 0, 2, 1));
        assert!(!v.extended_params());
        let caps: Vec<_> = v.capabilities().collect();
        assert_eq!(
            caps,
            [
                CapabilityView {
                    code: CapabilityCode::MULTIPROTOCOL,
                    value: &hex!("0001 00 01")
                },
                CapabilityView {
                    code: CapabilityCode::FOUR_OCTET_AS,
                    value: &hex!("0000FDE9")
                },
            ]
        );
        assert!(v.has_capability(CapabilityCode::FOUR_OCTET_AS));
        assert!(!v.has_capability(CapabilityCode::ROUTE_REFRESH));
        let open = Open::decode(&BASE[HEADER_LEN..]).unwrap();
        assert_eq!(
            open,
            Open {
                asn: 65001,
                hold_time: 90,
                bgp_id: Ipv4Addr::new(192, 0, 2, 1),
                capabilities: vec![
                    Capability::Multiprotocol {
                        afi: Afi::IPV4,
                        safi: Safi::UNICAST
                    },
                    Capability::FourOctetAs(65001),
                ],
            }
        );
        // Two capabilities in two parameters re-encode as one parameter.
        let mut out = BytesMut::new();
        open.encode(&mut out);
        assert_eq!(
            &out[..],
            &hex!(
                "ffffffffffffffffffffffffffffffff 002B 01"
                "04 FDE9 005A C0000201 0E"
                "02 0C 01 04 0001 00 01 41 04 0000FDE9"
            )[..]
        );
        assert_eq!(out.len(), open.encoded_len());
        assert_eq!(Open::decode(&out[HEADER_LEN..]).unwrap(), open);
    }

    #[test]
    fn test_o1_bad_version() {
        for version in [5u8, 3] {
            let mut m = BASE;
            m[19] = version;
            assert_eq!(reject(&m), (2, 1, hex!("0004").to_vec()));
            let e = parse(&m).unwrap_err();
            assert_eq!(e.offset, 19);
        }
    }

    #[test]
    fn test_o2_hold_time() {
        for hold in [1u8, 2] {
            let mut m = BASE;
            m[22..24].copy_from_slice(&[0, hold]);
            assert_eq!(reject(&m), (2, 6, vec![]));
        }
        let mut m = BASE;
        m[22..24].copy_from_slice(&[0, 0]);
        assert_eq!(parse(&m).unwrap().hold_time(), 0);
        m[22..24].copy_from_slice(&[0, 3]);
        assert_eq!(parse(&m).unwrap().hold_time(), 3);
    }

    #[test]
    fn test_o3_bad_bgp_id() {
        let mut m = BASE;
        m[24..28].copy_from_slice(&hex!("00000000"));
        assert_eq!(reject(&m), (2, 3, vec![]));
        // iBGP with our own identifier: the FSM's check, offered here.
        let v = parse(&BASE).unwrap();
        let ours = Ipv4Addr::new(192, 0, 2, 1);
        let e = v.check_peer(65001, ours, true).unwrap_err();
        assert_eq!(notif(&e), (2, 3, vec![]));
        // Equal identifiers are fine between different ASes (RFC 6286 §2.2).
        assert!(v.check_peer(65001, ours, false).is_ok());
        assert!(
            v.check_peer(65001, Ipv4Addr::new(192, 0, 2, 2), true)
                .is_ok()
        );
    }

    #[test]
    fn test_o4_bad_peer_as() {
        // My AS FDEA where FDE9 is configured (the capability agrees with the field).
        let m = msg(&hex!(
            "04 FDEA 005A C0000201 10 02 06 01 04 0001 00 01 02 06 41 04 0000FDEA"
        ));
        let v = parse(&m).unwrap();
        assert_eq!(v.asn(), 65002);
        let e = v
            .check_peer(65001, Ipv4Addr::new(192, 0, 2, 9), false)
            .unwrap_err();
        assert_eq!(notif(&e), (2, 2, vec![]));
        assert_eq!(e.kind, ErrorKind::BadPeerAs { asn: 65002 });
        // The capability disagrees with My AS, which is not AS_TRANS.
        let mut m = BASE;
        m[20..22].copy_from_slice(&hex!("FDEA"));
        assert_eq!(reject(&m), (2, 2, vec![]));
        // With AS_TRANS in My AS, the capability is the AS.
        let m = msg(&hex!(
            "04 5BA0 005A C0000201 10 02 06 01 04 0001 00 01 02 06 41 04 FA56EA00"
        ));
        let v = parse(&m).unwrap();
        assert_eq!((v.my_as_field(), v.asn()), (23456, 4_200_000_000));
        assert!(
            v.check_peer(4_200_000_000, Ipv4Addr::LOCALHOST, true)
                .is_ok()
        );
        // Two 4-octet AS capabilities that disagree.
        let m = msg(&hex!(
            "04 5BA0 005A C0000201 10 02 06 41 04 FA56EA00 02 06 41 04 FA56EA01"
        ));
        assert_eq!(reject(&m), (2, 2, vec![]));
        // AS 0 (RFC 7607 §2), in the field or in the capability.
        let m = msg(&hex!("04 0000 005A C0000201 00"));
        assert_eq!(reject(&m), (2, 2, vec![]));
        let m = msg(&hex!("04 5BA0 005A C0000201 08 02 06 41 04 00000000"));
        assert_eq!(reject(&m), (2, 2, vec![]));
    }

    #[test]
    fn test_o5_unsupported_optional_parameter() {
        let m = msg(&hex!(
            "04 FDE9 005A C0000201 0C 02 06 01 04 0001 00 01 03 02 0000"
        ));
        assert_eq!(reject(&m), (2, 4, vec![]));
        assert_eq!(
            parse(&m).unwrap_err(),
            DecodeError::new(37, ErrorKind::UnsupportedOptionalParameter { ty: 3 })
        );
    }

    #[test]
    fn test_o6_opt_parm_len_overruns() {
        // Opt Parm Len 0x10 but only 8 parameter bytes follow.
        let m = msg(&hex!("04 FDE9 005A C0000201 10 02 06 01 04 0001 00 01"));
        assert_eq!(m.len(), 0x25);
        assert_eq!(reject(&m), (2, 0, vec![]));
        // The message ends on a parameter type, its length octet missing.
        let m = msg(&hex!("04 FDE9 005A C0000201 09 02 06 01 04 0001 00 01 02"));
        assert_eq!(reject(&m), (2, 0, vec![]));
        // The message ends on a parameter length octet.
        let m = msg(&hex!(
            "04 FDE9 005A C0000201 0A 02 06 01 04 0001 00 01 02 06"
        ));
        assert_eq!(reject(&m), (2, 0, vec![]));
        // Opt Parm Len shorter than the bytes present.
        let m = msg(&hex!("04 FDE9 005A C0000201 08 02 06 01 04 0001 00 01 00"));
        assert_eq!(reject(&m), (2, 0, vec![]));
        // The capability header cut at the end of its parameter.
        let m = msg(&hex!("04 FDE9 005A C0000201 03 02 01 41"));
        assert_eq!(reject(&m), (2, 0, vec![]));
    }

    #[test]
    fn test_o7_capability_overflows_parameter() {
        let m = msg(&hex!(
            "04 FDE9 005A C0000201 10 02 06 01 04 0001 00 01 02 06 41 08 0000FDE9"
        ));
        assert_eq!(reject(&m), (2, 0, vec![]));
        assert_eq!(parse(&m).unwrap_err().offset, 40);
        // A known capability of an impossible length inside a well-formed parameter.
        let m = msg(&hex!(
            "04 FDE9 005A C0000201 10 02 06 01 04 0001 00 01 02 06 41 03 00FDE9 00"
        ));
        assert_eq!(reject(&m), (2, 0, vec![]));
    }

    #[test]
    fn test_o8_extended_params() {
        // Inner parameter length 0x20 > extended length 0x10.
        let m = msg(&hex!(
            "04 FDE9 005A C0000201 FF FF 0010"
            "02 0020 01 04 0001 00 01 41 04 0000FDE9 00"
        ));
        assert_eq!(reject(&m), (2, 0, vec![]));
        // Extended length longer than the message.
        let m = msg(&hex!(
            "04 FDE9 005A C0000201 FF FF 0020 02 000C 01 04 0001 00 01 41 04 0000FDE9"
        ));
        assert_eq!(reject(&m), (2, 0, vec![]));
        // The message ends inside the extended length.
        let m = msg(&hex!("04 FDE9 005A C0000201 FF FF 00"));
        assert_eq!(reject(&m), (2, 0, vec![]));
        // The valid extended form MUST be accepted, though it would fit in 255.
        let m = msg(&hex!(
            "04 FDE9 005A C0000201 FF FF 000F 02 000C 01 04 0001 00 01 41 04 0000FDE9"
        ));
        let v = parse(&m).unwrap();
        assert!(v.extended_params());
        assert_eq!(v.asn(), 65001);
        assert_eq!(v.capabilities().count(), 2);
        // Other parameter types in the extended form are still 2/4.
        let m = msg(&hex!("04 FDE9 005A C0000201 FF FF 0005 03 0002 0000"));
        assert_eq!(reject(&m), (2, 4, vec![]));
        assert_eq!(parse(&m).unwrap_err().offset, 32);
        // Opt Parm Len 255 with a first type other than 255 is the classic form.
        let mut body = hex!("04 FDE9 005A C0000201 FF 02 FD").to_vec();
        for _ in 0..125 {
            body.extend_from_slice(&hex!("02 00"));
        }
        body.extend_from_slice(&hex!("EE 01 00"));
        assert_eq!(body.len(), 10 + 255);
        let m = msg(&body);
        let v = parse(&m).unwrap();
        assert!(!v.extended_params());
        assert_eq!(v.capabilities().count(), 126);
    }

    #[test]
    fn test_o9_unknown_capability_is_kept() {
        let m = msg(&hex!(
            "04 FDE9 005A C0000201 16 02 06 01 04 0001 00 01 02 06 41 04 0000FDE9 02 04 EE 02 0000"
        ));
        let v = parse(&m).unwrap();
        let open = Open::from(&v);
        assert_eq!(
            open.capabilities.last(),
            Some(&Capability::Unknown {
                code: CapabilityCode(0xEE),
                value: Bytes::from_static(&[0, 0]),
            })
        );
    }

    #[test]
    fn role_capabilities_must_agree() {
        let m = msg(&hex!("04 FDE9 005A C0000201 08 02 06 09 01 03 09 01 03"));
        assert!(parse(&m).is_ok());
        let m = msg(&hex!("04 FDE9 005A C0000201 08 02 06 09 01 03 09 01 00"));
        assert_eq!(reject(&m), (2, 11, vec![]));
    }

    #[test]
    fn short_body_is_bad_length() {
        assert_eq!(
            notif(&OpenView::new(&[4]).unwrap_err()),
            (1, 2, hex!("0014").to_vec())
        );
        assert!(OpenView::new(&[]).is_err());
    }

    #[test]
    fn no_capabilities() {
        let m = msg(&hex!("04 FDE9 00B4 C0000201 00"));
        let v = parse(&m).unwrap();
        assert_eq!(v.capabilities().count(), 0);
        let open = Open::from(&v);
        let mut out = BytesMut::new();
        open.encode(&mut out);
        assert_eq!(out, m);
    }

    #[test]
    fn four_octet_asn_encodes_as_trans() {
        let open = Open {
            asn: 4_200_000_000,
            hold_time: 180,
            bgp_id: Ipv4Addr::new(10, 0, 0, 1),
            capabilities: vec![Capability::FourOctetAs(4_200_000_000)],
        };
        let mut out = BytesMut::new();
        open.encode(&mut out);
        assert_eq!(
            &out[..],
            &hex!(
                "ffffffffffffffffffffffffffffffff 0025 01"
                "04 5BA0 00B4 0A000001 08 02 06 41 04 FA56EA00"
            )[..]
        );
        assert_eq!(Open::decode(&out[HEADER_LEN..]).unwrap(), open);
    }

    /// An OPEN whose capabilities take `caps_len` bytes, in unknown capabilities of code 0xEE.
    fn open_with_caps_len(caps_len: usize) -> Open {
        let mut capabilities = Vec::new();
        let mut left = caps_len;
        while left > 0 {
            let value = (left - 2).min(255);
            capabilities.push(Capability::Unknown {
                code: CapabilityCode(0xEE),
                value: Bytes::from(vec![0xab; value]),
            });
            left -= 2 + value;
        }
        Open {
            asn: 65001,
            hold_time: 90,
            bgp_id: Ipv4Addr::new(192, 0, 2, 1),
            capabilities,
        }
    }

    #[test]
    fn classic_form_up_to_255_then_rfc9072() {
        // 253 bytes of capabilities + 2 of parameter header = Opt Parm Len 255.
        let open = open_with_caps_len(253);
        let mut out = BytesMut::new();
        open.encode(&mut out);
        assert_eq!(out.len(), open.encoded_len());
        assert_eq!(&out[28..31], &hex!("FF 02 FD"));
        let v = OpenView::new(&out[HEADER_LEN..]).unwrap();
        assert!(!v.extended_params());
        assert_eq!(Open::from(&v), open);

        // One byte more switches to the extended form.
        let open = open_with_caps_len(254);
        let mut out = BytesMut::new();
        open.encode(&mut out);
        assert_eq!(out.len(), open.encoded_len());
        assert_eq!(&out[28..35], &hex!("FF FF 0101 02 00FE"));
        let v = OpenView::new(&out[HEADER_LEN..]).unwrap();
        assert!(v.extended_params());
        assert_eq!(Open::from(&v), open);
    }

    #[test]
    fn every_capability_round_trips_in_an_open() {
        let open = Open {
            asn: 65001,
            hold_time: 90,
            bgp_id: Ipv4Addr::new(192, 0, 2, 1),
            capabilities: vec![
                Capability::Multiprotocol {
                    afi: Afi::IPV6,
                    safi: Safi::UNICAST,
                },
                Capability::RouteRefresh,
                Capability::EnhancedRouteRefresh,
                Capability::ExtendedMessage,
                Capability::ExtendedNextHop(vec![ExtendedNextHopEntry {
                    afi: Afi::IPV4,
                    safi: Safi::UNICAST,
                    next_hop_afi: Afi::IPV6,
                }]),
                Capability::GracefulRestart(GracefulRestart {
                    restart_state: true,
                    notification: true,
                    restart_time: 120,
                    families: vec![GrFamily {
                        afi: Afi::IPV4,
                        safi: Safi::UNICAST,
                        forwarding: true,
                    }],
                }),
                Capability::FourOctetAs(65001),
                Capability::AddPath(vec![AddPathEntry {
                    afi: Afi::IPV4,
                    safi: Safi::UNICAST,
                    mode: AddPathMode::Both,
                }]),
                Capability::LongLivedGracefulRestart(vec![LlgrFamily {
                    afi: Afi::IPV4,
                    safi: Safi::UNICAST,
                    forwarding: false,
                    stale_time: 86400,
                }]),
                Capability::Role(BgpRole::PEER),
                Capability::Fqdn {
                    hostname: "rr1".into(),
                    domain: "example.net".into(),
                },
            ],
        };
        let mut out = BytesMut::new();
        open.encode(&mut out);
        assert_eq!(Open::decode(&out[HEADER_LEN..]).unwrap(), open);
        // Byte-exact re-encode of what we decoded.
        let mut again = BytesMut::new();
        Open::decode(&out[HEADER_LEN..]).unwrap().encode(&mut again);
        assert_eq!(again, out);
    }
}

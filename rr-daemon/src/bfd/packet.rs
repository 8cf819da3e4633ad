//! BFD Control packets (RFC 5880 §4): the 24-byte mandatory section and the optional
//! Keyed SHA1 authentication section (§4.4), encoded and decoded without I/O.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! |   Auth Type   |   Auth Len    |  Key ID       |   Reserved    |   (A bit)
//! |                        Sequence Number                        |
//! |                Auth Key/Digest (20 bytes)...                  |
//! ```
//!
//! [`Packet::decode`] applies the checks of §6.8.6 that need only the packet itself
//! (version, lengths, detect multiplier, multipoint bit, discriminator); the ones that
//! need the session (Your Discriminator zero outside Down, authentication) are the
//! session's.

use sha1::{Digest, Sha1};

/// Length of a packet without authentication.
pub const MANDATORY_LEN: usize = 24;
/// Length of the Keyed SHA1 authentication section (§4.4).
pub const SHA1_AUTH_LEN: usize = 28;
/// Auth Type of Keyed SHA1.
pub const AUTH_KEYED_SHA1: u8 = 4;
/// Auth Type of Meticulous Keyed SHA1.
pub const AUTH_METICULOUS_SHA1: u8 = 5;

/// A session state as carried in the `Sta` field (§4.1). The control API spells it
/// `"admin-down"`, `"down"`, `"init"`, `"up"`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Held down by its operator.
    AdminDown,
    /// Down, or just created.
    Down,
    /// The remote side is heard and says Down.
    Init,
    /// Up.
    Up,
}

impl State {
    fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => Self::AdminDown,
            1 => Self::Down,
            2 => Self::Init,
            _ => Self::Up,
        }
    }

    const fn bits(self) -> u8 {
        match self {
            Self::AdminDown => 0,
            Self::Down => 1,
            Self::Init => 2,
            Self::Up => 3,
        }
    }

    /// Lowercase name, as the control API shows it (`"up"`, `"admin-down"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AdminDown => "admin-down",
            Self::Down => "down",
            Self::Init => "init",
            Self::Up => "up",
        }
    }
}

/// Diagnostic codes (§4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Diag(pub u8);

impl Diag {
    /// No Diagnostic.
    pub const NONE: Self = Self(0);
    /// Control Detection Time Expired.
    pub const TIME_EXPIRED: Self = Self(1);
    /// Neighbor Signaled Session Down.
    pub const NEIGHBOR_DOWN: Self = Self(3);
    /// Path Down.
    pub const PATH_DOWN: Self = Self(5);
    /// Administratively Down.
    pub const ADMIN_DOWN: Self = Self(7);

    /// The RFC's name.
    pub const fn name(self) -> &'static str {
        match self.0 {
            0 => "no diagnostic",
            1 => "control detection time expired",
            2 => "echo function failed",
            3 => "neighbor signaled session down",
            4 => "forwarding plane reset",
            5 => "path down",
            6 => "concatenated path down",
            7 => "administratively down",
            8 => "reverse concatenated path down",
            _ => "unknown diagnostic",
        }
    }
}

/// The Keyed SHA1 section of a packet (§4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sha1Auth {
    /// [`AUTH_KEYED_SHA1`] or [`AUTH_METICULOUS_SHA1`].
    pub auth_type: u8,
    /// Which key.
    pub key_id: u8,
    /// The sequence number.
    pub seq: u32,
    /// The digest as received (or the key, before signing).
    pub digest: [u8; 20],
}

/// The authentication section of a received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Keyed SHA1 or Meticulous Keyed SHA1.
    Sha1(Sha1Auth),
    /// A type this implementation does not speak (Simple Password, MD5): such a packet
    /// fails authentication on every session.
    Other(u8),
}

/// One BFD Control packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Diagnostic.
    pub diag: Diag,
    /// Sender's session state.
    pub state: State,
    /// Poll.
    pub poll: bool,
    /// Final.
    pub fin: bool,
    /// Control Plane Independent.
    pub cpi: bool,
    /// Demand.
    pub demand: bool,
    /// Detection time multiplier.
    pub detect_mult: u8,
    /// My Discriminator (non-zero).
    pub my_disc: u32,
    /// Your Discriminator (zero until the remote one is known).
    pub your_disc: u32,
    /// Desired Min TX Interval, microseconds.
    pub desired_min_tx: u32,
    /// Required Min RX Interval, microseconds.
    pub required_min_rx: u32,
    /// Required Min Echo RX Interval, microseconds.
    pub required_min_echo_rx: u32,
    /// The authentication section, when the A bit is set.
    pub auth: Option<Auth>,
}

/// Why a datagram is not a BFD Control packet (§6.8.6: discarded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the mandatory section, or than its own Length field says.
    #[error("truncated")]
    Truncated,
    /// Version other than 1.
    #[error("version {0}")]
    Version(u8),
    /// Length field below the minimum (24, or 26 with authentication).
    #[error("bad length {0}")]
    Length(u8),
    /// Detect Mult of zero.
    #[error("detect multiplier zero")]
    DetectMult,
    /// The Multipoint bit is set.
    #[error("multipoint bit set")]
    Multipoint,
    /// My Discriminator of zero.
    #[error("my discriminator zero")]
    MyDiscriminator,
    /// An authentication section that does not fit its own length, or the packet's.
    #[error("bad authentication section")]
    AuthSection,
}

impl Packet {
    /// Decodes and checks `b` (§6.8.6, the checks that need no session). Never panics.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < MANDATORY_LEN {
            return Err(DecodeError::Truncated);
        }
        let version = b[0] >> 5;
        if version != 1 {
            return Err(DecodeError::Version(version));
        }
        let flags = b[1];
        let auth_bit = flags & 0x04 != 0;
        let len = b[3];
        let min = if auth_bit { 26 } else { MANDATORY_LEN };
        if usize::from(len) < min {
            return Err(DecodeError::Length(len));
        }
        if usize::from(len) > b.len() {
            return Err(DecodeError::Truncated);
        }
        let detect_mult = b[2];
        if detect_mult == 0 {
            return Err(DecodeError::DetectMult);
        }
        if flags & 0x01 != 0 {
            return Err(DecodeError::Multipoint);
        }
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let my_disc = word(4);
        if my_disc == 0 {
            return Err(DecodeError::MyDiscriminator);
        }
        let auth = if auth_bit {
            Some(decode_auth(&b[MANDATORY_LEN..usize::from(len)])?)
        } else {
            None
        };
        Ok(Self {
            diag: Diag(b[0] & 0x1f),
            state: State::from_bits(flags >> 6),
            poll: flags & 0x20 != 0,
            fin: flags & 0x10 != 0,
            cpi: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult,
            my_disc,
            your_disc: word(8),
            desired_min_tx: word(12),
            required_min_rx: word(16),
            required_min_echo_rx: word(20),
            auth,
        })
    }

    /// Encodes the packet; with a Keyed SHA1 section, `key` is the secret it is signed
    /// with (§6.7.4: the digest is SHA1 over the packet with the key, zero-padded to 20
    /// bytes, in the digest field). The section's own `digest` is ignored.
    pub fn encode(&self, key: Option<&[u8]>) -> Vec<u8> {
        let auth_len = match self.auth {
            Some(Auth::Sha1(_)) => SHA1_AUTH_LEN,
            _ => 0,
        };
        let len = MANDATORY_LEN + auth_len;
        let mut b = Vec::with_capacity(len);
        b.push((1 << 5) | (self.diag.0 & 0x1f));
        let flags = (self.state.bits() << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.fin) << 4)
            | (u8::from(self.cpi) << 3)
            | (u8::from(auth_len > 0) << 2)
            | (u8::from(self.demand) << 1);
        b.push(flags);
        b.push(self.detect_mult);
        b.push(len as u8);
        for w in [
            self.my_disc,
            self.your_disc,
            self.desired_min_tx,
            self.required_min_rx,
            self.required_min_echo_rx,
        ] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        if let Some(Auth::Sha1(a)) = self.auth {
            b.extend_from_slice(&[a.auth_type, SHA1_AUTH_LEN as u8, a.key_id, 0]);
            b.extend_from_slice(&a.seq.to_be_bytes());
            b.extend_from_slice(&padded_key(key.unwrap_or_default()));
            let digest = Sha1::digest(&b);
            b[MANDATORY_LEN + 8..].copy_from_slice(&digest);
        }
        b
    }
}

fn decode_auth(s: &[u8]) -> Result<Auth, DecodeError> {
    // The section's own length must fit in what the packet's Length field covers.
    let (Some(&auth_type), Some(&auth_len)) = (s.first(), s.get(1)) else {
        return Err(DecodeError::AuthSection);
    };
    if usize::from(auth_len) > s.len() || auth_len < 2 {
        return Err(DecodeError::AuthSection);
    }
    if auth_type != AUTH_KEYED_SHA1 && auth_type != AUTH_METICULOUS_SHA1 {
        return Ok(Auth::Other(auth_type));
    }
    if usize::from(auth_len) != SHA1_AUTH_LEN {
        return Err(DecodeError::AuthSection);
    }
    let mut digest = [0; 20];
    digest.copy_from_slice(&s[8..28]);
    Ok(Auth::Sha1(Sha1Auth {
        auth_type,
        key_id: s[2],
        seq: u32::from_be_bytes([s[4], s[5], s[6], s[7]]),
        digest,
    }))
}

/// A key as it goes into the digest field: zero-padded (or cut) to 20 bytes.
fn padded_key(key: &[u8]) -> [u8; 20] {
    let mut k = [0; 20];
    let n = key.len().min(20);
    k[..n].copy_from_slice(&key[..n]);
    k
}

/// Whether `raw` (the packet as received, `len` bytes of it covered by its Length field)
/// carries a valid Keyed SHA1 digest for `key` (§6.7.4): the digest field replaced by the
/// key, hashed, and compared with what was received. The comparison takes the same time
/// whatever the difference.
pub fn sha1_valid(raw: &[u8], key: &[u8]) -> bool {
    let Some(len) = raw.get(3).map(|l| usize::from(*l)) else {
        return false;
    };
    if len != MANDATORY_LEN + SHA1_AUTH_LEN || raw.len() < len {
        return false;
    }
    let mut copy = raw[..len].to_vec();
    let at = MANDATORY_LEN + 8;
    let received: [u8; 20] = match raw[at..len].try_into() {
        Ok(d) => d,
        Err(_) => return false,
    };
    copy[at..].copy_from_slice(&padded_key(key));
    let digest = Sha1::digest(&copy);
    digest
        .iter()
        .zip(received.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> Packet {
        Packet {
            diag: Diag::NONE,
            state: State::Up,
            poll: true,
            fin: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_disc: 0x0102_0304,
            your_disc: 0x0a0b_0c0d,
            desired_min_tx: 300_000,
            required_min_rx: 300_000,
            required_min_echo_rx: 0,
            auth: None,
        }
    }

    #[test]
    fn encodes_the_exact_bytes() {
        let b = sample().encode(None);
        assert_eq!(
            b,
            [
                0x20, 0xe0, 3, 24, // v1 diag 0, Up + P, mult 3, len 24
                1, 2, 3, 4, // my
                0x0a, 0x0b, 0x0c, 0x0d, // your
                0x00, 0x04, 0x93, 0xe0, // 300,000 us
                0x00, 0x04, 0x93, 0xe0, // 300,000 us
                0, 0, 0, 0,
            ]
        );
        assert_eq!(Packet::decode(&b), Ok(sample()));
    }

    #[test]
    fn decodes_a_down_packet_with_diagnostic() {
        // Down, diag 1 (time expired), F set, mult 5, your discriminator zero.
        let b = [
            0x21, 0x50, 5, 24, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40, 0, 0, 0x27, 0x10, 0, 0,
            0, 0,
        ];
        let p = Packet::decode(&b).unwrap();
        assert_eq!(p.state, State::Down);
        assert_eq!(p.diag, Diag::TIME_EXPIRED);
        assert!(p.fin && !p.poll);
        assert_eq!((p.my_disc, p.your_disc), (9, 0));
        assert_eq!((p.desired_min_tx, p.required_min_rx), (1_000_000, 10_000));
        assert_eq!(p.encode(None), b);
    }

    #[test]
    fn keyed_sha1_matches_a_digest_computed_by_hand() {
        let mut p = sample();
        p.auth = Some(Auth::Sha1(Sha1Auth {
            auth_type: AUTH_KEYED_SHA1,
            key_id: 7,
            seq: 0x1122_3344,
            digest: [0; 20],
        }));
        let b = p.encode(Some(b"secret"));
        assert_eq!(b.len(), 52);
        assert_eq!(b[1] & 0x04, 0x04, "A bit");
        assert_eq!(b[3], 52);
        assert_eq!(&b[24..32], &[4, 28, 7, 0, 0x11, 0x22, 0x33, 0x44]);
        // The digest is SHA1 over the packet with the zero-padded key in its place.
        let mut signed = b.clone();
        signed[32..52].copy_from_slice(b"secret\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(&b[32..52], Sha1::digest(&signed).as_slice());
        assert!(sha1_valid(&b, b"secret"));
        assert!(!sha1_valid(&b, b"secreT"));
        let d = Packet::decode(&b).unwrap();
        let Some(Auth::Sha1(a)) = d.auth else {
            panic!("{d:?}")
        };
        assert_eq!((a.key_id, a.seq), (7, 0x1122_3344));
        let mut tampered = b.clone();
        tampered[19] ^= 1;
        assert!(!sha1_valid(&tampered, b"secret"));
    }

    #[test]
    fn refuses_what_section_6_8_6_discards() {
        let good = sample().encode(None);
        let with = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            Packet::decode(&b)
        };
        assert_eq!(Packet::decode(&good[..23]), Err(DecodeError::Truncated));
        assert_eq!(with(0, 0x40), Err(DecodeError::Version(2)));
        assert_eq!(with(3, 23), Err(DecodeError::Length(23)));
        assert_eq!(with(3, 25), Err(DecodeError::Truncated));
        assert_eq!(with(2, 0), Err(DecodeError::DetectMult));
        assert_eq!(with(1, 0xc1), Err(DecodeError::Multipoint));
        let mut b = good.clone();
        b[4..8].fill(0);
        assert_eq!(Packet::decode(&b), Err(DecodeError::MyDiscriminator));
        // A bit with a section that overruns the length.
        let mut b = good.clone();
        b[1] |= 0x04;
        b[3] = 26;
        b.extend_from_slice(&[4, 28]);
        assert_eq!(Packet::decode(&b), Err(DecodeError::AuthSection));
        // Trailing bytes past Length are ignored (§6.8.6 only bounds it from above).
        let mut b = good.clone();
        b.extend_from_slice(&[0xff; 8]);
        assert_eq!(Packet::decode(&b), Ok(sample()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::decode(&b) {
                // Whatever decodes re-encodes to a packet that decodes the same.
                if !matches!(p.auth, Some(Auth::Other(_))) {
                    let again = Packet::decode(&p.encode(Some(b"k"))).unwrap();
                    prop_assert_eq!(again.my_disc, p.my_disc);
                    prop_assert_eq!(again.state, p.state);
                }
            }
            let _ = sha1_valid(&b, b"key");
        }

        #[test]
        fn mutated_packets_never_panic(i in 0usize..52, v in any::<u8>(), cut in 0usize..53) {
            let mut p = sample();
            p.auth = Some(Auth::Sha1(Sha1Auth { auth_type: AUTH_METICULOUS_SHA1, key_id: 1, seq: 5, digest: [0; 20] }));
            let mut b = p.encode(Some(b"k"));
            b[i] = v;
            b.truncate(cut);
            let _ = Packet::decode(&b);
            let _ = sha1_valid(&b, b"k");
        }
    }
}

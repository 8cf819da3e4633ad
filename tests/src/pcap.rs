//! Captures made up from a saved byte stream, for dissectors that read captures (tshark):
//! one TCP flow from 10.0.0.1:40000 to 10.0.0.2:`port`, a SYN and then the bytes in
//! segments, in a pcap of raw IPv4 packets.

/// The pcap of a SYN and then `data` sent in order on one TCP connection to `port`.
pub fn tcp_flow(data: &[u8], port: u16) -> Vec<u8> {
    const SEGMENT: usize = 16_000;
    let mut out = Vec::with_capacity(data.len() + data.len() / SEGMENT * 60 + 128);
    // Global header: magic, version 2.4, zone, sigfigs, snaplen, LINKTYPE_RAW (101).
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend(0i32.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    out.extend(65_535u32.to_le_bytes());
    out.extend(101u32.to_le_bytes());
    let mut seq = 1_000u32;
    packet(&mut out, port, seq, 0x02, &[], 0);
    seq = seq.wrapping_add(1);
    for (i, chunk) in data.chunks(SEGMENT).enumerate() {
        packet(&mut out, port, seq, 0x18, chunk, i as u32 + 1);
        seq = seq.wrapping_add(chunk.len() as u32);
    }
    out
}

fn packet(out: &mut Vec<u8>, port: u16, seq: u32, flags: u8, payload: &[u8], n: u32) {
    let total = 40 + payload.len();
    out.extend(1_700_000_000u32.to_le_bytes());
    out.extend(n.to_le_bytes());
    out.extend((total as u32).to_le_bytes());
    out.extend((total as u32).to_le_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    out.extend(ip);
    out.extend(40_000u16.to_be_bytes());
    out.extend(port.to_be_bytes());
    out.extend(seq.to_be_bytes());
    out.extend(if flags & 0x10 != 0 { 1u32 } else { 0 }.to_be_bytes());
    out.push(0x50);
    out.push(flags);
    out.extend(65_535u16.to_be_bytes());
    out.extend([0, 0, 0, 0]);
    out.extend(payload);
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

#!/usr/bin/env python3
"""Turn a tcpdump capture of BGP sessions into raw per-direction BGP byte streams,
and describe such streams.  Standard library only.

  pcap-to-bgp.py extract PCAP --map IP=OUTFILE [--map IP=OUTFILE ...]
      Reassembles the TCP payload (port 179) of each direction in sequence order,
      dropping retransmitted / overlapping bytes, picks the TCP connection that
      carried the BGP session (the one with an OPEN in both directions and the
      most payload), and writes the bytes sent by IP to OUTFILE.

  pcap-to-bgp.py check FILE ...
      Checks that each FILE is back-to-back BGP messages (16 x 0xff marker, 2-byte
      length 19..65535, known type) starting with an
      OPEN, and prints per-type counts.  Exits non-zero on any error.

  pcap-to-bgp.py describe FILE[@PEERFILE] ...
      Parses FILE as back-to-back BGP messages and prints one summary line.
      PEERFILE (the other direction of the same session) is used to work out
      which ADD-PATH directions were negotiated, so NLRI can be decoded.
      Exits non-zero if any file fails to parse.
"""
import ipaddress
import struct
import sys
from collections import Counter, defaultdict

# ---------------------------------------------------------------- pcap reading


def read_pcap(path):
    """Yield (linktype, frame bytes) from a classic pcap file (not pcapng)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise SystemExit(f"{path}: too short for a pcap header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise SystemExit(f"{path}: not a classic pcap file (magic {magic.hex()})")
    linktype = struct.unpack(e + "I", data[20:24])[0] & 0x0FFFFFFF
    off = 24
    while off + 16 <= len(data):
        _ts, _tus, incl, _orig = struct.unpack(e + "IIII", data[off:off + 16])
        off += 16
        frame = data[off:off + incl]
        off += incl
        if len(frame) < incl:
            break  # truncated last record (capture interrupted)
        yield linktype, frame


def l3_of(linktype, frame):
    """Return (ethertype, l3 bytes) or None."""
    if linktype == 1:  # Ethernet
        if len(frame) < 14:
            return None
        et = struct.unpack("!H", frame[12:14])[0]
        off = 14
        while et in (0x8100, 0x88A8) and len(frame) >= off + 4:
            et = struct.unpack("!H", frame[off + 2:off + 4])[0]
            off += 4
        return et, frame[off:]
    if linktype == 113:  # Linux cooked (SLL)
        return struct.unpack("!H", frame[14:16])[0], frame[16:]
    if linktype == 276:  # Linux cooked v2 (SLL2)
        return struct.unpack("!H", frame[0:2])[0], frame[20:]
    if linktype in (12, 101):  # raw IP
        v = frame[0] >> 4
        return (0x0800 if v == 4 else 0x86DD), frame
    raise SystemExit(f"unsupported pcap link type {linktype}")


def tcp_segments(path):
    """Yield (src, sport, dst, dport, seq, flags, payload)."""
    for lt, frame in read_pcap(path):
        r = l3_of(lt, frame)
        if r is None:
            continue
        et, p = r
        if et == 0x0800 and len(p) >= 20:
            ihl = (p[0] & 0x0F) * 4
            total = struct.unpack("!H", p[2:4])[0]
            if p[9] != 6:
                continue
            if total >= ihl:
                p_end = min(total, len(p))
            else:
                p_end = len(p)  # TSO frame with tot_len 0
            src = ipaddress.IPv4Address(p[12:16])
            dst = ipaddress.IPv4Address(p[16:20])
            t = p[ihl:p_end]
        elif et == 0x86DD and len(p) >= 40:
            plen = struct.unpack("!H", p[4:6])[0]
            nh = p[6]
            src = ipaddress.IPv6Address(p[8:24])
            dst = ipaddress.IPv6Address(p[24:40])
            t = p[40:40 + plen] if plen else p[40:]
            # skip simple extension headers
            while nh in (0, 43, 60) and len(t) >= 8:
                nh, hl = t[0], (t[1] + 1) * 8
                t = t[hl:]
            if nh != 6:
                continue
        else:
            continue
        if len(t) < 20:
            continue
        sport, dport, seq, _ack, offres, flags = struct.unpack("!HHIIBB", t[:14])
        doff = (offres >> 4) * 4
        yield str(src), sport, str(dst), dport, seq, flags, bytes(t[doff:])


def reassemble(segs):
    """segs: list of (seq, flags, payload).  Returns (bytes, holes)."""
    isn = None
    for seq, flags, _ in segs:
        if flags & 0x02:  # SYN
            isn = (seq + 1) & 0xFFFFFFFF
            break
    data_segs = [(s, p) for s, f, p in segs if p]
    if not data_segs:
        return b"", 0
    if isn is None:
        # no SYN captured: take the lowest sequence number (wrap-aware enough here)
        base = data_segs[0][0]
        isn = min(data_segs, key=lambda sp: (sp[0] - base) & 0xFFFFFFFF)[0]
    chunks = {}
    for s, p in data_segs:
        rel = (s - isn) & 0xFFFFFFFF
        if rel > 0x7FFFFFFF:
            continue  # before ISN: nonsense
        if rel not in chunks or len(p) > len(chunks[rel]):
            chunks[rel] = p
    out = bytearray()
    holes = 0
    for rel in sorted(chunks):
        p = chunks[rel]
        end = rel + len(p)
        if end <= len(out):
            continue  # full retransmit
        if rel > len(out):
            holes += 1
            break  # cannot continue past a gap
        out += p[len(out) - rel:]
    return bytes(out), holes


def cmd_extract(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    pcap = argv[0]
    mapping = {}
    i = 1
    while i < len(argv):
        if argv[i] != "--map" or i + 1 >= len(argv) or "=" not in argv[i + 1]:
            raise SystemExit(__doc__)
        ip, out = argv[i + 1].split("=", 1)
        mapping[str(ipaddress.ip_address(ip))] = out
        i += 2
    conns = defaultdict(lambda: defaultdict(list))
    for src, sport, dst, dport, seq, flags, payload in tcp_segments(pcap):
        if sport != 179 and dport != 179:
            continue
        key = tuple(sorted([(src, sport), (dst, dport)]))
        conns[key][(src, sport)].append((seq, flags, payload))
    candidates = []
    for key, dirs in conns.items():
        streams = {}
        ok = True
        for ep in key:
            data, holes = reassemble(dirs.get(ep, []))
            if holes:
                print(f"warning: {key}: {ep} has a gap in sequence space", file=sys.stderr)
            streams[ep] = data
            if len(data) < 29 or data[18] != 1:
                ok = False
        total = sum(len(d) for d in streams.values())
        print(f"connection {key[0][0]}:{key[0][1]} <-> {key[1][0]}:{key[1][1]}: "
              f"{total} payload bytes, OPEN both ways: {ok}", file=sys.stderr)
        if ok and all(ep[0] in mapping for ep in key):
            candidates.append((total, key, streams))
    if not candidates:
        raise SystemExit(f"{pcap}: no TCP connection with a BGP OPEN in both directions "
                         f"between {sorted(mapping)}")
    candidates.sort(key=lambda c: c[0])
    _total, key, streams = candidates[-1]
    for ep in key:
        data = streams[ep]
        msgs, rest = split_messages(data)
        if rest:
            print(f"warning: {ep[0]}: dropping {len(rest)} trailing bytes of an incomplete "
                  f"message", file=sys.stderr)
            data = data[:len(data) - len(rest)]
        with open(mapping[ep[0]], "wb") as f:
            f.write(data)
        c = Counter(TYPES.get(m[18], str(m[18])) for m in msgs)
        print(f"{mapping[ep[0]]}: {len(data)} bytes, {dict(c)}", file=sys.stderr)


# ---------------------------------------------------------------- BGP decoding

TYPES = {1: "OPEN", 2: "UPDATE", 3: "NOTIFICATION", 4: "KEEPALIVE", 5: "ROUTE-REFRESH"}
CAPS = {1: "MP", 2: "RR", 5: "EXTNH", 6: "EXTMSG", 9: "BGPSEC", 64: "GR", 65: "AS4",
        67: "DYN", 69: "ADDPATH", 70: "ENHRR", 71: "LLGR", 72: "ROLE", 73: "FQDN",
        128: "RR-OLD", 131: "MULTISESSION-OLD"}
AFS = {(1, 1): "ipv4", (2, 1): "ipv6", (1, 2): "ipv4-mc", (2, 2): "ipv6-mc",
       (1, 4): "ipv4-lu", (2, 4): "ipv6-lu", (1, 128): "vpnv4", (2, 128): "vpnv6",
       (25, 70): "evpn", (1, 133): "flow4", (2, 133): "flow6"}
ATTRS = {1: "ORIGIN", 2: "AS_PATH", 3: "NEXT_HOP", 4: "MED", 5: "LOCAL_PREF",
         6: "ATOMIC_AGGREGATE", 7: "AGGREGATOR", 8: "COMMUNITIES", 9: "ORIGINATOR_ID",
         10: "CLUSTER_LIST", 14: "MP_REACH", 15: "MP_UNREACH", 16: "EXT_COMMUNITIES",
         17: "AS4_PATH", 18: "AS4_AGGREGATOR", 32: "LARGE_COMMUNITIES", 35: "OTC"}
CEASE = {1: "max-prefix", 2: "admin-shutdown", 3: "peer-deconfigured", 4: "admin-reset",
         5: "connection-rejected", 6: "other-config-change", 7: "collision",
         8: "out-of-resources", 9: "hard-reset"}


def split_messages(data):
    msgs = []
    off = 0
    while off + 19 <= len(data):
        if data[off:off + 16] != b"\xff" * 16:
            raise ValueError(f"bad marker at offset {off}")
        ln = struct.unpack("!H", data[off + 16:off + 18])[0]
        if ln < 19 or ln > 65535:
            raise ValueError(f"bad length {ln} at offset {off}")
        if off + ln > len(data):
            break
        if data[off + 18] not in TYPES:
            raise ValueError(f"bad type {data[off + 18]} at offset {off}")
        msgs.append(data[off:off + ln])
        off += ln
    return msgs, data[off:]


def parse_open(m):
    """Return dict with asn, hold, bgp id, caps list [(code, value)]."""
    ver, asn, hold = struct.unpack("!BHH", m[19:24])
    bid = str(ipaddress.IPv4Address(m[24:28]))
    optlen = m[28]
    opts = m[29:29 + optlen]
    if optlen == 255 and opts[:1] == b"\xff":  # RFC 9072 extended
        optlen = struct.unpack("!H", m[30:32])[0]
        opts = m[32:32 + optlen]
        ext = True
    else:
        ext = False
    caps = []
    off = 0
    while off < len(opts):
        if ext:
            ptype, plen = opts[off], struct.unpack("!H", opts[off + 1:off + 3])[0]
            pv = opts[off + 3:off + 3 + plen]
            off += 3 + plen
        else:
            ptype, plen = opts[off], opts[off + 1]
            pv = opts[off + 2:off + 2 + plen]
            off += 2 + plen
        if ptype != 2:
            continue
        c = 0
        while c + 2 <= len(pv):
            code, clen = pv[c], pv[c + 1]
            caps.append((code, bytes(pv[c + 2:c + 2 + clen])))
            c += 2 + clen
    return {"version": ver, "asn": asn, "hold": hold, "id": bid, "caps": caps}


def addpath_dirs(open_info):
    """{(afi,safi): flags} where flags bit0 = receive, bit1 = send."""
    r = {}
    for code, v in open_info["caps"]:
        if code == 69:
            for i in range(0, len(v) - 3, 4):
                afi, safi, sr = struct.unpack("!HBB", v[i:i + 4])
                r[(afi, safi)] = sr
    return r


def caps_text(open_info):
    out = []
    for code, v in open_info["caps"]:
        name = CAPS.get(code, f"cap{code}")
        if code == 1:
            afi, _res, safi = struct.unpack("!HBB", v[:4])
            out.append(f"MP({AFS.get((afi, safi), f'{afi}/{safi}')})")
        elif code == 65:
            out.append(f"AS4({struct.unpack('!I', v[:4])[0]})")
        elif code == 69:
            parts = []
            for i in range(0, len(v) - 3, 4):
                afi, safi, sr = struct.unpack("!HBB", v[i:i + 4])
                parts.append(f"{AFS.get((afi, safi), f'{afi}/{safi}')}:"
                             f"{ {1: 'rx', 2: 'tx', 3: 'rx+tx'}.get(sr, sr) }")
            out.append("ADDPATH(" + ",".join(parts) + ")")
        elif code == 64:
            flags_time = struct.unpack("!H", v[:2])[0] if len(v) >= 2 else 0
            afs = []
            for i in range(2, len(v) - 3, 4):
                afi, safi, _f = struct.unpack("!HBB", v[i:i + 4])
                afs.append(AFS.get((afi, safi), f"{afi}/{safi}"))
            out.append(f"GR(time={flags_time & 0xFFF}"
                       + (",R" if flags_time & 0x8000 else "")
                       + ("," + ",".join(afs) if afs else "") + ")")
        elif code == 5 and len(v) >= 6:  # RFC 8950 extended next hop
            parts = []
            for i in range(0, len(v) - 5, 6):
                afi, safi, nhafi = struct.unpack("!HHH", v[i:i + 6])
                parts.append(f"{AFS.get((afi, safi), f'{afi}/{safi}')}/nh-afi{nhafi}")
            out.append("EXTNH(" + ",".join(parts) + ")")
        elif code == 73:
            hl = v[0] if v else 0
            out.append(f"FQDN({v[1:1 + hl].decode(errors='replace')})")
        elif code == 71:
            out.append("LLGR")
        else:
            out.append(name)
    return " ".join(out)


def parse_prefixes(buf, afi, addpath):
    out = []
    off = 0
    alen = 4 if afi == 1 else 16
    while off < len(buf):
        pid = None
        if addpath:
            pid = struct.unpack("!I", buf[off:off + 4])[0]
            off += 4
        plen = buf[off]
        off += 1
        nb = (plen + 7) // 8
        if plen > alen * 8 or off + nb > len(buf):
            raise ValueError(f"bad prefix length {plen}")
        raw = buf[off:off + nb] + b"\0" * (alen - nb)
        off += nb
        addr = ipaddress.ip_address(bytes(raw))
        out.append((pid, f"{addr}/{plen}"))
    return out


def describe(path, peer_path=None):
    data = open(path, "rb").read()
    msgs, rest = split_messages(data)
    if rest:
        raise ValueError(f"{len(rest)} trailing bytes")
    if not msgs or msgs[0][18] != 1:
        raise ValueError("does not start with an OPEN")
    own = parse_open(msgs[0])
    # ADD-PATH in this direction: sender can send and receiver can receive
    ap = set()
    if peer_path:
        pmsgs, _ = split_messages(open(peer_path, "rb").read())
        if pmsgs and pmsgs[0][18] == 1:
            peer = parse_open(pmsgs[0])
            mine, theirs = addpath_dirs(own), addpath_dirs(peer)
            ap = {af for af in mine if mine[af] & 2 and theirs.get(af, 0) & 1}
    counts = Counter(TYPES[m[18]] for m in msgs)
    attrs = Counter()
    announced, withdrawn = Counter(), Counter()
    pids = set()
    eor = 0
    nh_lens = Counter()
    notes = []
    for m in msgs:
        t = m[18]
        if t == 3:
            code, sub = m[19], m[20]
            txt = f"NOTIFICATION {code}/{sub}"
            if code == 6:
                txt += f" (Cease {CEASE.get(sub, '?')}"
                extra = m[21:]
                if sub in (2, 4) and extra:
                    ln = extra[0]
                    txt += f', "{extra[1:1 + ln].decode(errors="replace")}"'
                txt += ")"
            notes.append(txt)
        if t != 2:
            continue
        wlen = struct.unpack("!H", m[19:21])[0]
        wd = m[21:21 + wlen]
        alen = struct.unpack("!H", m[21 + wlen:23 + wlen])[0]
        pa = m[23 + wlen:23 + wlen + alen]
        nlri = m[23 + wlen + alen:]
        if wlen == 0 and not nlri and (alen == 0 or (
                alen in (6, 7) and pa[1] == 15
                and (pa[2] if not pa[0] & 0x10 else pa[3]) == 3)):
            eor += 1  # End-of-RIB marker (IPv4 empty UPDATE or empty MP_UNREACH)
            continue
        for pid, p in parse_prefixes(wd, 1, (1, 1) in ap):
            withdrawn["ipv4"] += 1
            if pid is not None:
                pids.add(pid)
        for pid, p in parse_prefixes(nlri, 1, (1, 1) in ap):
            announced["ipv4"] += 1
            if pid is not None:
                pids.add(pid)
        off = 0
        while off < len(pa):
            flags, code = pa[off], pa[off + 1]
            if flags & 0x10:
                ln = struct.unpack("!H", pa[off + 2:off + 4])[0]
                v = pa[off + 4:off + 4 + ln]
                off += 4 + ln
            else:
                ln = pa[off + 2]
                v = pa[off + 3:off + 3 + ln]
                off += 3 + ln
            attrs[ATTRS.get(code, f"attr{code}")] += 1
            if code == 14:
                afi, safi, nhl = struct.unpack("!HBB", v[:4])
                nh_lens[(AFS.get((afi, safi), f"{afi}/{safi}"), nhl)] += 1
                n = v[4 + nhl + 1:]
                for pid, p in parse_prefixes(n, afi, (afi, safi) in ap):
                    announced[AFS.get((afi, safi), f"{afi}/{safi}")] += 1
                    if pid is not None:
                        pids.add(pid)
            elif code == 15:
                afi, safi = struct.unpack("!HB", v[:3])
                n = v[3:]
                for pid, p in parse_prefixes(n, afi, (afi, safi) in ap):
                    withdrawn[AFS.get((afi, safi), f"{afi}/{safi}")] += 1
                    if pid is not None:
                        pids.add(pid)
    parts = [f"{path.split('/')[-1]}: {len(data)} bytes, {len(msgs)} msgs: "
             + ", ".join(f"{counts[k]} {k}" for k in TYPES.values() if counts[k])]
    parts.append(f"OPEN AS{own['asn']} id {own['id']} hold {own['hold']} caps: "
                 + caps_text(own))
    if announced or withdrawn:
        parts.append("announced " + ",".join(f"{k}={v}" for k, v in sorted(announced.items()))
                     + "; withdrawn " + (",".join(f"{k}={v}" for k, v in
                                                  sorted(withdrawn.items())) or "0")
                     + f"; End-of-RIB {eor}")
    if ap:
        parts.append("ADD-PATH on " + ",".join(AFS.get(a, str(a)) for a in sorted(ap))
                     + f", path ids seen {sorted(pids)}")
    if nh_lens:
        parts.append("MP_REACH next-hop lengths " + ",".join(
            f"{af}:{ln}" for (af, ln) in sorted(nh_lens)))
    if attrs:
        parts.append("attrs " + ",".join(f"{k}x{v}" for k, v in sorted(attrs.items())))
    parts.extend(notes)
    return "; ".join(parts)


def cmd_check(argv):
    bad = 0
    for f in argv:
        try:
            data = open(f, "rb").read()
            msgs, rest = split_messages(data)
            if rest:
                raise ValueError(f"{len(rest)} trailing bytes")
            if not msgs or msgs[0][18] != 1:
                raise ValueError("does not start with an OPEN")
            c = Counter(TYPES[m[18]] for m in msgs)
            print(f"{f}: OK {len(data)} bytes, {len(msgs)} messages: "
                  + ", ".join(f"{k}={c[k]}" for k in TYPES.values() if c[k]))
        except (OSError, ValueError) as e:
            print(f"{f}: BAD: {e}")
            bad += 1
    return 1 if bad else 0


def cmd_describe(argv):
    bad = 0
    for a in argv:
        f, _, peer = a.partition("@")
        try:
            print(describe(f, peer or None))
        except (ValueError, IndexError, struct.error) as e:
            print(f"{f}: PARSE ERROR: {e}")
            bad += 1
    return 1 if bad else 0


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    if sys.argv[1] == "extract":
        cmd_extract(sys.argv[2:])
        return 0
    if sys.argv[1] == "check":
        return cmd_check(sys.argv[2:])
    if sys.argv[1] == "describe":
        return cmd_describe(sys.argv[2:])
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main())

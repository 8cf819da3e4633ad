//! UPDATEs that many receivers get alike: read once, replayed by the others.
//!
//! A reflector sends the members of an update group the same UPDATEs in the same order, so
//! with 100 receivers of a million prefixes the load tool read 22 million UPDATEs, 100
//! copies of each, and used more of the two cores than the reflector under test (4.4 s of
//! CPU against 3.5 s): 100 receivers measured the tool. Now the first receiver to read the
//! k-th UPDATE of its session records its bytes and what it did (each prefix's table
//! position, announced or withdrawn) at place k of a log; a receiver whose k-th UPDATE has
//! the same bytes applies that record to its own tally instead of reading the UPDATE.
//!
//! Counting stays exact and per receiver: what an UPDATE does to a tally follows from its
//! bytes alone (the receivers of a run share one session context), and each receiver
//! applies the record to its own tally, so a withdrawal of a prefix it does not hold is
//! still unexpected for it alone. A receiver whose UPDATE at some place differs from the
//! record there (a late receiver's catch-up, a reflector that orders each peer's UPDATEs
//! its own way) reads its own from then on, as every receiver did before. Receiver 1 (and
//! every receiver under `--full-check`) parses every UPDATE in full and never replays;
//! it only records.
//!
//! The log also keeps a tally of its own, that of a receiver that got every recorded
//! UPDATE, and each record what it did to that tally and its count after. Receivers
//! whose every UPDATE so far was replayed have exactly that tally as of their place, so
//! they keep none and take the record's outcome ([`Cursor::replay_shared`]): with 100
//! receivers, 99 of them then touch no bitmap at all. Such a receiver that is the first
//! at a place reads the UPDATE into steps, records them, and takes the outcome the log
//! gave them. The first UPDATE it can do neither with (it differs from the record, the
//! record has no steps or no outcome, it needs the full parse, the log is full) gives it
//! a tally of its own: the log's, when the log is at its place, or else the steps of
//! every place before it applied afresh.
//!
//! Such a receiver still went through its UPDATEs one at a time, each compared with a
//! record somewhere else in memory: with 100 receivers that was the load tool's largest
//! cost (a tenth of the machine's samples, a third of it waiting for memory). So the log
//! also keeps its UPDATEs as the sessions carry them, whole messages back to back, in
//! segments sealed at [`SEGMENT`] bytes, each place's outcome beside it. A receiver
//! without a tally compares what it has read with that stream in one comparison
//! ([`Cursor::replay_run`]): every whole message up to the first byte that differs is the
//! log's UPDATE at its place, byte for byte (header included, so their boundaries are the
//! same), and takes the recorded outcome. What differs (a KEEPALIVE between them, an
//! End-of-RIB, another UPDATE) or is not sealed yet goes the way of one UPDATE at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bgp_wire::MessageType;
use bgp_wire::header::{HEADER_LEN, MARKER};

use crate::stats::{Applied, Tally};

/// Places per chunk of the log.
const CHUNK: usize = 1024;

/// Places the log keeps at most (a million-prefix table takes about 223,000): a bound on
/// its slots, 40 bytes each; past them every receiver reads its own.
const MAX_PLACES: usize = 1 << 20;

/// Bytes the records may hold at most (bodies, steps and the stream; a million-prefix
/// table's take about 60 MB, and one record can take up to 20 kB): past them nothing more
/// is recorded, and receivers read what has no record themselves.
const MAX_BYTES: usize = 256 << 20;

/// Bytes of whole messages a segment of the log's stream takes before it is sealed and
/// receivers compare with it: the most a receiver close behind the first reads one
/// UPDATE at a time.
const SEGMENT: usize = 16 * 1024;

/// In a recorded step: the prefix was announced (else withdrawn).
const ANNOUNCED: u32 = 1 << 31;

/// In a recorded step: the prefix is not one of the table's.
const STRANGER: u32 = ANNOUNCED - 1;

/// Table positions a step can carry: below [`STRANGER`].
pub(crate) const MAX_POSITIONS: u64 = STRANGER as u64;

/// What an UPDATE did to the log's tally, and that tally's count after it.
pub(crate) type Shared = (Applied, u64);

/// What one UPDATE did, as recorded by the first receiver that read it.
#[derive(Debug)]
struct Record {
    /// The UPDATE without its header.
    body: Box<[u8]>,
    /// One step per prefix, in the UPDATE's order (withdrawals first): its table
    /// position or [`STRANGER`], with [`ANNOUNCED`] for an announcement. `None` when
    /// every receiver is to read it itself (its reader found a fault: each receiver
    /// reports its own).
    steps: Option<Box<[u32]>>,
    /// What the steps did to the log's tally, and its count after; `None` once a place
    /// without steps broke the log's tally.
    shared: Option<Shared>,
}

/// UPDATEs of consecutive places, whole messages back to back as a session carries them,
/// with each one's outcome for the log's tally; immutable once sealed.
#[derive(Debug, Default)]
struct Segment {
    /// The place of the first.
    first: usize,
    bytes: Vec<u8>,
    /// Where each starts in `bytes`, and (once sealed) the end of the last.
    starts: Vec<u32>,
    /// What each did to the log's tally, and its count after.
    shared: Vec<Shared>,
}

impl Segment {
    /// The place after its last.
    const fn end(&self) -> usize {
        self.first + self.shared.len()
    }
}

/// What the log's lock guards: the places are recorded in order under it.
#[derive(Debug)]
struct Front {
    /// The tally of a receiver that got every recorded UPDATE, and how many places it
    /// has seen; `None` after a place recorded without steps.
    tally: Option<(Tally, usize)>,
    /// The segment of the stream being filled; `None` once the stream ended (a place
    /// without an outcome for the log's tally).
    open: Option<Segment>,
}

impl Front {
    /// Adds the UPDATE `body` recorded at `place` with `shared` to the stream: the open
    /// segment sealed when it is full, or when the stream ends here. Called as `place`'s
    /// record is made, so a segment is sealed only once the place after its last comes:
    /// by then every place in it has its record (its recorder passed them all), which a
    /// receiver that takes the segment and later needs a tally of its own relies on
    /// ([`Log::tally_at`]).
    fn stream(&mut self, place: usize, body: &[u8], shared: Option<Shared>) -> Option<Segment> {
        let open = self.open.as_mut()?;
        let len = u16::try_from(HEADER_LEN + body.len()).ok();
        match (shared, len) {
            (Some(s), Some(len)) if open.end() == place => {
                let sealed = (open.bytes.len() >= SEGMENT).then(|| {
                    let next = Segment {
                        first: place,
                        ..Segment::default()
                    };
                    std::mem::replace(open, next)
                });
                let at = u32::try_from(open.bytes.len()).expect("a segment is a few kB");
                open.starts.push(at);
                open.bytes.extend_from_slice(&MARKER);
                open.bytes.extend_from_slice(&len.to_be_bytes());
                open.bytes.push(MessageType::UPDATE.0);
                open.bytes.extend_from_slice(body);
                open.shared.push(s);
                sealed
            }
            // Receivers take no outcome from here on: what is open is the stream's last.
            _ => self.open.take().filter(|o| !o.shared.is_empty()),
        }
        .map(|mut sealed| {
            sealed.starts.push(sealed.bytes.len() as u32);
            sealed
        })
    }
}

#[derive(Debug)]
struct Chunk {
    records: Box<[OnceLock<Record>]>,
}

/// The records by place, shared by a run's receivers.
#[derive(Debug)]
pub(crate) struct Log {
    chunks: Mutex<Vec<Arc<Chunk>>>,
    /// How many chunks it may have.
    max_chunks: usize,
    /// Bytes the records hold.
    bytes: AtomicUsize,
    /// How many they may hold.
    max_bytes: usize,
    /// The log's tally and the stream being filled.
    front: Mutex<Front>,
    /// The stream's sealed segments, in place order from place 0.
    segments: Mutex<Vec<Arc<Segment>>>,
    /// How many there are: looked at first, so that a receiver at the front does not
    /// take the lock for every UPDATE.
    sealed: AtomicUsize,
}

impl Log {
    /// An empty log for a table of `n` prefixes.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            chunks: Mutex::default(),
            max_chunks: MAX_PLACES / CHUNK,
            bytes: AtomicUsize::new(0),
            max_bytes: MAX_BYTES,
            front: Mutex::new(Front {
                tally: Some((Tally::new(n), 0)),
                open: Some(Segment::default()),
            }),
            segments: Mutex::default(),
            sealed: AtomicUsize::new(0),
        }
    }

    /// Sealed segment `k` of the stream, if there is one yet.
    fn segment(&self, k: usize) -> Option<Arc<Segment>> {
        if k >= self.sealed.load(Ordering::Acquire) {
            return None;
        }
        let segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        segments.get(k).cloned()
    }

    /// The tally of a receiver that got every UPDATE of places `0..place` as recorded:
    /// their steps applied afresh; `None` if one of them has none.
    fn tally_at(&self, n: usize, place: usize) -> Option<Tally> {
        let mut t = Tally::new(n);
        let mut next = 0;
        let mut chunk = None;
        for p in 0..place {
            let c = p / CHUNK;
            if chunk.as_ref().is_none_or(|(k, _)| *k != c) {
                chunk = Some((c, self.chunk(c)?));
            }
            let (_, ch) = chunk.as_ref()?;
            let steps = ch.records[p % CHUNK].get()?.steps.as_deref()?;
            apply_steps(steps, &mut t, &mut next);
        }
        Some(t)
    }

    /// Chunk `c`, made if it is the first asked for; `None` past the bound.
    fn chunk(&self, c: usize) -> Option<Arc<Chunk>> {
        if c >= self.max_chunks {
            return None;
        }
        let mut chunks = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
        while chunks.len() <= c {
            chunks.push(Arc::new(Chunk {
                records: (0..CHUNK).map(|_| OnceLock::new()).collect(),
            }));
        }
        Some(chunks[c].clone())
    }
}

/// The steps of the UPDATE a receiver reads itself, to be recorded.
#[derive(Debug, Default)]
pub(crate) struct Steps {
    steps: Vec<u32>,
    /// The reading found a fault: not to be replayed.
    faulted: bool,
    /// Steps are kept: the UPDATE is to be recorded.
    on: bool,
}

impl Steps {
    /// Empties it for the next UPDATE; `on`: whether that one is to be recorded (else
    /// [`Steps::push`] keeps nothing).
    pub(crate) fn clear(&mut self, on: bool) {
        self.steps.clear();
        self.faulted = false;
        self.on = on;
    }

    /// A prefix at table position `i` (`None`: not the table's, or past
    /// [`MAX_POSITIONS`]), announced or withdrawn.
    pub(crate) fn push(&mut self, i: Option<usize>, announced: bool) {
        if !self.on {
            return;
        }
        let at = i
            .and_then(|i| u32::try_from(i).ok())
            .filter(|&i| i < STRANGER)
            .unwrap_or(STRANGER);
        self.steps.push(if announced { at | ANNOUNCED } else { at });
    }

    /// The reading found a fault, or the UPDATE changed nothing: every receiver is to
    /// read it itself.
    pub(crate) fn fault(&mut self) {
        self.faulted = true;
    }

    /// Applies the steps kept to `tally`: what they did.
    pub(crate) fn apply(&self, tally: &mut Tally) -> Applied {
        apply_steps(&self.steps, tally, &mut 0)
    }
}

/// A receiver's place in the log: the place of its session's next UPDATE (End-of-RIB
/// aside, which takes no place).
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    place: usize,
    /// The chunk of `place`, once looked up.
    chunk: Option<(usize, Arc<Chunk>)>,
    /// An UPDATE differed from the record at its place: the session's stream is not the
    /// log's, no record applies to it any more.
    diverged: bool,
    /// The stream's segment looked up last, and its number.
    segment: Option<(usize, Arc<Segment>)>,
}

impl Cursor {
    /// Whether no UPDATE of the session differed from the record at its place so far:
    /// what it reads itself is worth recording.
    pub(crate) const fn in_step(&self) -> bool {
        !self.diverged
    }

    /// The record slot at the cursor's place, unless the stream diverged or the place is
    /// past the log's bound.
    fn slot(&mut self, log: &Log) -> Option<&OnceLock<Record>> {
        if self.diverged {
            return None;
        }
        let c = self.place / CHUNK;
        if self.chunk.as_ref().is_none_or(|(n, _)| *n != c) {
            self.chunk = log.chunk(c).map(|ch| (c, ch));
        }
        let (_, chunk) = self.chunk.as_ref()?;
        Some(&chunk.records[self.place % CHUNK])
    }

    /// Applies the record of `body` at the cursor's place to `tally` and moves on;
    /// `None` (the cursor staying) when there is none to apply: the receiver reads the
    /// UPDATE itself and calls [`Cursor::record`]. `next` becomes the position after the
    /// last prefix applied ([`crate::index::PrefixIndex::get_near`]).
    pub(crate) fn replay(
        &mut self,
        log: &Log,
        body: &[u8],
        tally: &mut Tally,
        next: &mut usize,
    ) -> Option<Applied> {
        let record = self.slot(log)?.get()?;
        if !same(&record.body, body) {
            self.diverged = true;
            return None;
        }
        let steps = record.steps.as_deref()?;
        let a = apply_steps(steps, tally, next);
        self.place += 1;
        Some(a)
    }

    /// [`Cursor::replay`] for a receiver that keeps no tally: every UPDATE it got so far
    /// was replayed, so its tally is the log's as of its place. `None` when there is no
    /// record at the cursor's place, or it is another UPDATE's, or it has no outcome for
    /// the log's tally; the cursor stays.
    pub(crate) fn replay_shared(&mut self, log: &Log, body: &[u8]) -> Option<Shared> {
        let record = self.slot(log)?.get()?;
        let shared = record.shared.filter(|_| same(&record.body, body))?;
        self.place += 1;
        Some(shared)
    }

    /// [`Cursor::replay_shared`] for many UPDATEs at once: takes the whole messages at the
    /// front of `read` that are the log's UPDATEs at the cursor's places, byte for byte,
    /// as far as the stream's sealed segments go, and moves on; `each` gets the outcome
    /// of each, in order. The bytes taken: 0 when the first message is not the log's
    /// (a KEEPALIVE, an End-of-RIB, another UPDATE), is not sealed yet, or is not whole.
    pub(crate) fn replay_run(
        &mut self,
        log: &Log,
        read: &[u8],
        mut each: impl FnMut(Shared),
    ) -> usize {
        let mut taken = 0;
        // Each turn takes the rest of a segment and goes on to the next, or ends.
        while !self.diverged && taken < read.len() {
            let Some(seg) = self.stream_segment(log) else {
                break;
            };
            let j = self.place - seg.first;
            let from = seg.starts[j] as usize;
            let (theirs, mine) = (&seg.bytes[from..], &read[taken..]);
            let n = theirs.len().min(mine.len());
            // Places j..k are whole in `read`, and the log's.
            let k = if theirs[..n] == mine[..n] {
                seg.starts.partition_point(|&s| s as usize <= from + n) - 1
            } else {
                let whole_and_same = |k: &usize| {
                    let (s, e) = (seg.starts[*k] as usize - from, seg.starts[*k + 1] as usize);
                    let e = e - from;
                    e <= mine.len() && theirs[s..e] == mine[s..e]
                };
                (j..seg.shared.len())
                    .find(|k| !whole_and_same(k))
                    .unwrap_or(seg.shared.len())
            };
            seg.shared[j..k].iter().for_each(|&s| each(s));
            taken += seg.starts[k] as usize - from;
            self.place += k - j;
            if k < seg.shared.len() {
                break;
            }
        }
        taken
    }

    /// The sealed segment of the log's stream that holds the cursor's place, if there is
    /// one yet.
    fn stream_segment(&mut self, log: &Log) -> Option<Arc<Segment>> {
        let mut k = self.segment.as_ref().map_or(0, |(k, _)| *k);
        // Each turn returns or moves on to a later segment, of which there are finitely
        // many.
        loop {
            match &self.segment {
                Some((at, seg)) if *at == k && self.place < seg.end() => {
                    return (seg.first <= self.place).then(|| seg.clone());
                }
                Some((at, _)) if *at == k => k += 1,
                _ => {}
            }
            self.segment = Some((k, log.segment(k)?));
        }
    }

    /// What [`Cursor::record`] gave the log at the place before the cursor's, if the
    /// record there is `body`'s: for a receiver without a tally that read the UPDATE.
    pub(crate) fn recorded_shared(&mut self, log: &Log, body: &[u8]) -> Option<Shared> {
        let c = self.place.checked_sub(1)?;
        let chunk = log.chunk(c / CHUNK)?;
        let record = chunk.records[c % CHUNK].get()?;
        record.shared.filter(|_| same(&record.body, body))
    }

    /// The cursor's place.
    pub(crate) const fn place(&self) -> usize {
        self.place
    }

    /// Whether the log has room for a record at the cursor's place and nobody has made
    /// it yet.
    pub(crate) fn unrecorded(&mut self, log: &Log) -> bool {
        self.slot(log).is_some_and(|s| s.get().is_none())
    }

    /// The tally of a receiver that got every UPDATE recorded before `place`, to keep
    /// from now on: the log's, if it is at `place`; `None` if a place before it has no
    /// steps.
    pub(crate) fn own_tally(log: &Log, n: usize, place: usize) -> Option<Tally> {
        {
            let front = log.front.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((tally, seen)) = front.tally.as_ref()
                && *seen == place
            {
                return Some(tally.clone());
            }
        }
        log.tally_at(n, place)
    }

    /// Records what reading `body` did at the cursor's place, unless another receiver
    /// did first (then a different UPDATE there means this stream diverged) or the log
    /// is full, and moves on.
    pub(crate) fn record(&mut self, log: &Log, body: &[u8], steps: &Steps) {
        let place = self.place;
        if let Some(slot) = self.slot(log) {
            let mut mine = false;
            let record = if log.bytes.load(Ordering::Relaxed) < log.max_bytes {
                Some(slot.get_or_init(|| {
                    mine = true;
                    let steps = (!steps.faulted).then(|| Box::<[u32]>::from(&steps.steps[..]));
                    let mut size = body.len() + steps.as_ref().map_or(0, |s| s.len() * 4);
                    let mut front = log.front.lock().unwrap_or_else(|p| p.into_inner());
                    let shared = match (front.tally.as_mut(), &steps) {
                        (Some((t, seen)), Some(s)) => {
                            *seen += 1;
                            let a = apply_steps(s, t, &mut 0);
                            Some((a, t.count()))
                        }
                        _ => {
                            // A place every receiver reads itself: the log no longer
                            // knows a receiver's tally.
                            front.tally = None;
                            None
                        }
                    };
                    if front.open.is_some() && shared.is_some() {
                        size += streamed(body.len());
                    }
                    if let Some(sealed) = front.stream(place, body, shared) {
                        let mut segments = log.segments.lock().unwrap_or_else(|p| p.into_inner());
                        segments.push(Arc::new(sealed));
                        log.sealed.store(segments.len(), Ordering::Release);
                    }
                    drop(front);
                    log.bytes.fetch_add(size, Ordering::Relaxed);
                    Record {
                        body: body.into(),
                        steps,
                        shared,
                    }
                }))
            } else {
                slot.get()
            };
            if record.is_some_and(|r| !mine && !same(&r.body, body)) {
                self.diverged = true;
            }
        }
        self.place += 1;
    }
}

/// What an UPDATE of `len` bytes without its header takes in the log's stream.
const fn streamed(len: usize) -> usize {
    HEADER_LEN + len + size_of::<u32>() + size_of::<Shared>()
}

/// Applies recorded steps to `tally`: what they did; `next` becomes the position after
/// the last prefix of the table.
fn apply_steps(steps: &[u32], tally: &mut Tally, next: &mut usize) -> Applied {
    let mut a = Applied::default();
    for &s in steps {
        let at = s & !ANNOUNCED;
        if s & ANNOUNCED != 0 {
            a.announced += 1;
            if at == STRANGER {
                a.unexpected += 1;
            } else {
                tally.insert(at as usize);
                *next = at as usize + 1;
            }
        } else {
            a.withdrawn += 1;
            if at == STRANGER || !tally.remove(at as usize) {
                a.unexpected += 1;
            }
            if at != STRANGER {
                *next = at as usize + 1;
            }
        }
    }
    a
}

/// Whether `a` and `b` hold the same bytes: compared eight at a time, inline (an UPDATE is
/// some 100 bytes, and a call to the C library's comparison cost as much as the rest of a
/// replay).
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = wa
        .remainder()
        .iter()
        .zip(wb.remainder())
        .all(|(x, y)| x == y);
    tail && wa.zip(wb).fold(0, |d, (x, y)| d | (word(x) ^ word(y))) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(v: &[(Option<usize>, bool)]) -> Steps {
        let mut s = Steps::default();
        s.clear(true);
        for &(i, announced) in v {
            s.push(i, announced);
        }
        s
    }

    #[test]
    fn test_a_record_replays_against_each_receivers_own_tally() {
        let log = Log::new(10);
        let (mut a, mut b) = (Cursor::default(), Cursor::default());
        let (mut ta, mut tb) = (Tally::new(10), Tally::new(10));
        let mut next = 0;
        // Place 0 announces 3, 4 and a stranger; place 1 withdraws 3 and 7.
        let u0 = [1u8, 2, 3];
        let u1 = [4u8, 5];
        assert!(a.replay(&log, &u0, &mut ta, &mut next).is_none());
        ta.insert(3);
        ta.insert(4);
        a.record(
            &log,
            &u0,
            &steps(&[(Some(3), true), (Some(4), true), (None, true)]),
        );
        ta.remove(3);
        a.record(&log, &u1, &steps(&[(Some(3), false), (Some(7), false)]));
        let r0 = b.replay(&log, &u0, &mut tb, &mut next).unwrap();
        assert_eq!((r0.announced, r0.withdrawn, r0.unexpected), (3, 0, 1));
        assert_eq!(next, 5);
        // 7 was never held by b: unexpected for it.
        let r1 = b.replay(&log, &u1, &mut tb, &mut next).unwrap();
        assert_eq!((r1.announced, r1.withdrawn, r1.unexpected), (0, 2, 1));
        assert_eq!(tb.count(), 1);
        assert!(tb.holds(4) && !tb.holds(3));
        // Nothing recorded at place 2 yet.
        assert!(b.replay(&log, &u1, &mut tb, &mut next).is_none());
        assert_eq!(b.place, 2);
    }

    #[test]
    fn test_a_receiver_without_a_tally_takes_the_logs_outcome() {
        let log = Log::new(10);
        let mut a = Cursor::default();
        let mut b = Cursor::default();
        let (u0, u1, u2) = ([1u8, 2, 3], [4u8, 5], [6u8]);
        // a records: place 0 announces 3, 4 and a stranger; place 1 withdraws 3 and 7.
        assert!(b.unrecorded(&log));
        a.record(
            &log,
            &u0,
            &steps(&[(Some(3), true), (Some(4), true), (None, true)]),
        );
        a.record(&log, &u1, &steps(&[(Some(3), false), (Some(7), false)]));
        let (r0, c0) = b.replay_shared(&log, &u0).unwrap();
        assert_eq!(
            (r0.announced, r0.withdrawn, r0.unexpected, c0),
            (3, 0, 1, 2)
        );
        // Another UPDATE at place 1: nothing to take, the cursor stays.
        assert!(b.replay_shared(&log, &u2).is_none());
        assert_eq!(b.place(), 1);
        let (r1, c1) = b.replay_shared(&log, &u1).unwrap();
        assert_eq!(
            (r1.announced, r1.withdrawn, r1.unexpected, c1),
            (0, 2, 1, 1)
        );
        // Nobody has place 2: b reads it and records, the log's tally taking it.
        assert!(b.unrecorded(&log));
        b.record(&log, &u2, &steps(&[(Some(9), true)]));
        let (r2, c2) = b.recorded_shared(&log, &u2).unwrap();
        assert_eq!((r2.announced, c2), (1, 2));
        // Its own tally when it needs one: the log's (at place 3), or rebuilt from the
        // steps (at place 1).
        let t3 = Cursor::own_tally(&log, 10, 3).unwrap();
        assert!(t3.holds(4) && t3.holds(9) && !t3.holds(3));
        let t1 = Cursor::own_tally(&log, 10, 1).unwrap();
        assert!(t1.holds(3) && t1.holds(4) && !t1.holds(9));
        assert_eq!(t1.count(), 2);
        // A place recorded without steps ends the log's tally: nothing later is shared,
        // and no tally can be rebuilt past it.
        let mut f = steps(&[(Some(5), true)]);
        f.fault();
        let mut d = Cursor {
            place: 3,
            ..Cursor::default()
        };
        d.record(&log, &[7], &f);
        d.record(&log, &[8], &steps(&[(Some(6), true)]));
        assert!(d.in_step());
        let mut c = Cursor {
            place: 3,
            ..Cursor::default()
        };
        assert!(c.replay_shared(&log, &[7]).is_none());
        c.place = 4;
        assert!(c.replay_shared(&log, &[8]).is_none());
        assert!(Cursor::own_tally(&log, 10, 4).is_none());
        assert!(Cursor::own_tally(&log, 10, 3).is_some());
    }

    /// UPDATE `i` of the stream tests: 100 bytes of its own.
    fn body(i: usize) -> Vec<u8> {
        (0..25).flat_map(|_| (i as u32).to_be_bytes()).collect()
    }

    /// An UPDATE as a session carries it.
    fn message(body: &[u8]) -> Vec<u8> {
        let mut m = MARKER.to_vec();
        m.extend_from_slice(&((HEADER_LEN + body.len()) as u16).to_be_bytes());
        m.push(MessageType::UPDATE.0);
        m.extend_from_slice(body);
        m
    }

    /// A log in which a receiver recorded UPDATEs 0..n, UPDATE i announcing prefix i;
    /// the messages back to back.
    fn streamed_log(n: usize) -> (Log, Vec<u8>) {
        let log = Log::new(1000);
        let mut a = Cursor::default();
        let mut read = Vec::new();
        for i in 0..n {
            a.record(&log, &body(i), &steps(&[(Some(i), true)]));
            read.extend(message(&body(i)));
        }
        (log, read)
    }

    /// A segment's places: sealed at the first message past [`SEGMENT`] bytes.
    const PER_SEGMENT: usize = SEGMENT.div_ceil(HEADER_LEN + 100);

    #[test]
    fn test_a_run_of_the_logs_updates_is_taken_at_once() {
        let (log, read) = streamed_log(300);
        // Two segments are sealed; the rest is open, for nobody yet.
        assert_eq!(log.segments.lock().unwrap().len(), 2);
        let mut b = Cursor::default();
        let mut seen = Vec::new();
        let taken = b.replay_run(&log, &read, |s| seen.push(s));
        assert_eq!(b.place(), 2 * PER_SEGMENT);
        assert_eq!(taken, 2 * PER_SEGMENT * (HEADER_LEN + 100));
        // Each place's outcome, in order: one announced, the count one more each time.
        assert_eq!(seen.len(), 2 * PER_SEGMENT);
        for (i, (a, c)) in seen.iter().enumerate() {
            assert_eq!((a.announced, a.unexpected, *c), (1, 0, i as u64 + 1));
        }
        // What is not sealed goes one UPDATE at a time.
        assert_eq!(b.replay_run(&log, &read[taken..], |_| panic!()), 0);
        let (_, c) = b.replay_shared(&log, &body(b.place())).unwrap();
        assert_eq!(c, 2 * PER_SEGMENT as u64 + 1);
    }

    #[test]
    fn test_a_run_ends_at_the_first_message_not_whole_or_not_the_logs() {
        let (log, read) = streamed_log(300);
        let m = HEADER_LEN + 100;
        // Read up to the middle of place 10: places 0..10 taken, 10 left for later.
        let mut b = Cursor::default();
        assert_eq!(b.replay_run(&log, &read[..10 * m + 50], |_| {}), 10 * m);
        assert_eq!(b.place(), 10);
        // A KEEPALIVE after place 12: 10..12 taken, the KEEPALIVE left.
        let mut with_keepalive = read[10 * m..12 * m].to_vec();
        let mut keepalive = MARKER.to_vec();
        keepalive.extend_from_slice(&[0, 19, MessageType::KEEPALIVE.0]);
        with_keepalive.extend_from_slice(&keepalive);
        with_keepalive.extend_from_slice(&read[12 * m..]);
        assert_eq!(b.replay_run(&log, &with_keepalive, |_| {}), 2 * m);
        assert_eq!(b.replay_run(&log, &with_keepalive[2 * m..], |_| {}), 0);
        // Past it, on across the segments' border as far as they are sealed.
        let rest = &with_keepalive[2 * m + HEADER_LEN..];
        assert_eq!(b.replay_run(&log, rest, |_| {}), (2 * PER_SEGMENT - 12) * m);
        // Another UPDATE at place 20 (its last byte changed): nothing from it on, and
        // the cursor is not put off the log (one at a time, it finds out).
        let mut c = Cursor::default();
        let mut other = read.clone();
        other[21 * m - 1] ^= 1;
        assert_eq!(c.replay_run(&log, &other, |_| {}), 20 * m);
        assert!(c.in_step());
        assert!(
            c.replay_shared(&log, &other[20 * m + HEADER_LEN..21 * m])
                .is_none()
        );
        // Or a different length at place 20.
        let mut d = Cursor::default();
        let mut longer = read[..20 * m].to_vec();
        longer.extend(message(&[0; 101]));
        assert_eq!(d.replay_run(&log, &longer, |_| {}), 20 * m);
    }

    #[test]
    fn test_a_segment_is_sealed_when_the_place_after_it_is_recorded() {
        // Bodies of 1 to 200 bytes, so that places start at uneven offsets.
        let log = Log::new(1000);
        let mut a = Cursor::default();
        let (mut read, mut borders) = (Vec::new(), Vec::new());
        let mut i = 0;
        while log.segments.lock().unwrap().is_empty() {
            let b: Vec<u8> = (0..=i % 200).map(|k| (k * 7 + i) as u8).collect();
            borders.push(read.len());
            read.extend(message(&b));
            a.record(&log, &b, &steps(&[(Some(i), true)]));
            i += 1;
        }
        // Sealed as place i - 1 was recorded: the segment ends before it, past SEGMENT.
        let seg = log.segment(0).unwrap();
        assert_eq!(seg.end(), i - 1);
        assert!(seg.bytes.len() >= SEGMENT);
        assert!(borders[i - 2] < SEGMENT);
        assert_eq!(seg.bytes[..], read[..borders[i - 1]]);
        // A read that ends exactly at its end, taken from a place inside it by a cursor
        // that has looked nothing up yet.
        let mut b = Cursor {
            place: 5,
            ..Cursor::default()
        };
        let upto = borders[i - 1];
        assert_eq!(
            b.replay_run(&log, &read[borders[5]..upto], |_| {}),
            upto - borders[5]
        );
        assert_eq!(b.place(), i - 1);
        // Every place taken from a sealed segment has its record: a tally can be rebuilt.
        assert_eq!(
            Cursor::own_tally(&log, 1000, i - 1).unwrap().count(),
            i as u64 - 1
        );
        // A cursor that diverged takes nothing.
        let mut d = Cursor {
            diverged: true,
            ..Cursor::default()
        };
        assert_eq!(d.replay_run(&log, &read, |_| panic!()), 0);
    }

    #[test]
    fn test_the_stream_ends_at_a_place_without_an_outcome() {
        let (log, mut read) = streamed_log(20);
        let mut a = Cursor {
            place: 20,
            ..Cursor::default()
        };
        // Place 20 has no steps: what was open is sealed, and the stream ends there.
        let mut f = steps(&[(Some(0), true)]);
        f.fault();
        a.record(&log, &[9], &f);
        read.extend(message(&[9]));
        for i in 21..300 {
            a.record(&log, &body(i), &steps(&[(Some(i), true)]));
            read.extend(message(&body(i)));
        }
        assert_eq!(log.segments.lock().unwrap().len(), 1);
        let mut b = Cursor::default();
        assert_eq!(b.replay_run(&log, &read, |_| {}), 20 * (HEADER_LEN + 100));
        assert_eq!(
            b.replay_run(&log, &read[20 * (HEADER_LEN + 100)..], |_| {}),
            0
        );
    }

    #[test]
    fn test_a_different_update_diverges_for_good() {
        let log = Log::new(10);
        let (mut a, mut b) = (Cursor::default(), Cursor::default());
        let mut t = Tally::new(10);
        let mut next = 0;
        a.record(&log, &[1], &steps(&[(Some(1), true)]));
        a.record(&log, &[2], &steps(&[(Some(2), true)]));
        // b's first UPDATE is another: it reads its own, and its record does not replace
        // a's; from then on nothing replays for b, not even an UPDATE a recorded.
        assert!(b.replay(&log, &[9], &mut t, &mut next).is_none());
        b.record(&log, &[9], &steps(&[(Some(9), true)]));
        assert!(b.diverged);
        assert!(b.replay(&log, &[2], &mut t, &mut next).is_none());
        let mut c = Cursor::default();
        assert_eq!(
            c.replay(&log, &[1], &mut t, &mut next).unwrap().announced,
            1
        );
    }

    #[test]
    fn test_a_faulted_update_is_read_by_every_receiver() {
        let log = Log::new(10);
        let (mut a, mut b) = (Cursor::default(), Cursor::default());
        let mut t = Tally::new(10);
        let mut next = 0;
        let mut s = steps(&[(Some(1), true)]);
        s.fault();
        a.record(&log, &[1], &s);
        assert!(b.replay(&log, &[1], &mut t, &mut next).is_none());
        // b reads it itself, records nothing new, and stays in step.
        b.record(&log, &[1], &steps(&[(Some(1), true)]));
        assert!(!b.diverged);
        assert_eq!(b.place, 1);
    }

    #[test]
    fn test_nothing_is_recorded_past_the_byte_budget_or_when_off() {
        let log = Log {
            max_bytes: 6,
            ..Log::new(10)
        };
        let mut a = Cursor::default();
        let mut t = Tally::new(10);
        let mut next = 0;
        // 3 bytes of body, 4 of step and the stream's: the budget is spent after the
        // first.
        a.record(&log, &[1, 2, 3], &steps(&[(Some(1), true)]));
        a.record(&log, &[4, 5, 6], &steps(&[(Some(2), true)]));
        assert_eq!(log.bytes.load(Ordering::Relaxed), 7 + streamed(3));
        let mut b = Cursor::default();
        assert!(b.replay(&log, &[1, 2, 3], &mut t, &mut next).is_some());
        assert!(b.replay(&log, &[4, 5, 6], &mut t, &mut next).is_none());
        // A receiver that reads its own past the budget stays in step.
        b.record(&log, &[4, 5, 6], &steps(&[(Some(2), true)]));
        assert!(b.in_step());
        // Steps not to be recorded are not kept; positions past the steps' range are
        // strangers.
        let mut s = Steps::default();
        s.clear(false);
        s.push(Some(1), true);
        assert!(s.steps.is_empty());
        s.clear(true);
        s.push(Some(MAX_POSITIONS as usize), false);
        s.push(Some(3), true);
        assert_eq!(s.steps, [STRANGER, 3 | ANNOUNCED]);
    }

    #[test]
    fn test_same_compares_every_byte() {
        let a: Vec<u8> = (0..21).collect();
        assert!(same(&a, &a.clone()));
        assert!(same(&[], &[]));
        for i in 0..a.len() {
            let mut b = a.clone();
            b[i] ^= 0x40;
            assert!(!same(&a, &b), "byte {i}");
        }
        assert!(!same(&a, &a[..20]));
    }

    #[test]
    fn test_the_log_is_bounded() {
        let log = Log {
            max_chunks: 2,
            ..Log::new(10)
        };
        let mut c = Cursor {
            place: 2 * CHUNK - 1,
            ..Cursor::default()
        };
        let mut t = Tally::new(10);
        let mut next = 0;
        c.record(&log, &[1], &steps(&[(Some(1), true)]));
        c.record(&log, &[2], &steps(&[(Some(2), true)]));
        assert_eq!(log.chunks.lock().unwrap().len(), 2);
        let mut d = Cursor {
            place: 2 * CHUNK - 1,
            ..Cursor::default()
        };
        assert!(d.replay(&log, &[1], &mut t, &mut next).is_some());
        assert!(d.replay(&log, &[2], &mut t, &mut next).is_none());
        assert_eq!(t.count(), 1);
    }
}

//! A transport's datagrams on their way out, written in place into runs ready for GSO.
//!
//! Datagrams to one UDP path that follow each other at the same size go into one buffer, back
//! to back: a run that the caller sends with one GSO call (`Transmit::segment_size`), the
//! last datagram of a run possibly shorter. The core writes each datagram straight into its
//! place in the run, so nothing is copied between writing and sending. A transport whose
//! outbox holds runs of one datagram only (`max_segments` 1, or TCP) sends as before.

use std::collections::VecDeque;

use crate::runtime::GSO_MAX_BYTES as RUN_MAX_BYTES;
use crate::sfu::{MAX_SPARE_BUFFERS, SPARE_BUFFER_SIZE};

/// Buffers given back by the caller, kept for the next datagrams: small ones for single
/// datagrams, large ones for runs (a run starts in a large one while any is kept).
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    small: Vec<Vec<u8>>,
    large: Vec<Vec<u8>>,
}

/// How many large (run) buffers are kept: 64 of 64 kB.
pub(crate) const MAX_LARGE_BUFFERS: usize = 64;

impl Buffers {
    /// Keeps `buffer` for reuse if there is room for it; drops it otherwise.
    pub(crate) fn give(&mut self, buffer: Vec<u8>) {
        if buffer.capacity() >= RUN_MAX_BYTES {
            if self.large.len() < MAX_LARGE_BUFFERS {
                self.large.push(buffer);
            }
        } else if buffer.capacity() >= SPARE_BUFFER_SIZE && self.small.len() < MAX_SPARE_BUFFERS {
            self.small.push(buffer);
        }
    }

    /// A copy of `contents` in a kept buffer (a new one when none is kept).
    pub(crate) fn copy_of(&mut self, contents: &[u8]) -> Vec<u8> {
        let mut buffer = self.small();
        buffer.clear();
        buffer.extend_from_slice(contents);
        buffer
    }

    /// A buffer for one datagram.
    fn small(&mut self) -> Vec<u8> {
        self.small
            .pop()
            .or_else(|| self.large.pop())
            .unwrap_or_else(|| Vec::with_capacity(SPARE_BUFFER_SIZE))
    }

    /// A buffer to start a run in: a large one while any is kept (the run then never moves),
    /// else a small one.
    fn first_of_run(&mut self) -> Vec<u8> {
        match self.large.pop() {
            Some(large) => large,
            None => self.small(),
        }
    }

    /// A buffer for a run.
    fn large(&mut self) -> Vec<u8> {
        self.large
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(RUN_MAX_BYTES))
    }

    /// How many buffers are kept.
    pub(crate) fn len(&self) -> usize {
        self.small.len() + self.large.len()
    }
}

/// Datagrams back to back in one buffer: `count` of `segment` bytes, the last possibly
/// shorter.
#[derive(Debug)]
struct Run {
    /// The datagrams are `buf[..used]`; past it, bytes of earlier use (never read).
    buf: Vec<u8>,
    used: usize,
    segment: usize,
    count: usize,
    /// Another datagram may join (the last one was not shorter than the segment size).
    open: bool,
}

/// A transport's datagrams not yet handed to the caller, in runs.
#[derive(Debug)]
pub(crate) struct Outbox {
    runs: VecDeque<Run>,
    /// How many datagrams one run may hold on a UDP path (1: every datagram alone).
    gso_segments: usize,
    /// Whether the path takes runs (UDP); on TCP every datagram is framed alone.
    udp: bool,
}

impl Outbox {
    /// An empty outbox whose runs hold at most `gso_segments` datagrams on a UDP path.
    pub(crate) fn new(gso_segments: usize) -> Self {
        Self {
            runs: VecDeque::new(),
            gso_segments: gso_segments.max(1),
            udp: true,
        }
    }

    /// The path changed to UDP (`true`) or TCP: what is written from now on starts a new run.
    pub(crate) fn set_udp(&mut self, udp: bool) {
        self.udp = udp;
        if let Some(run) = self.runs.back_mut() {
            run.open = false;
        }
    }

    fn max_segments(&self) -> usize {
        if self.udp {
            self.gso_segments
        } else {
            1
        }
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Room for one datagram of at most `room` bytes, at the end of the open run when it can
    /// take one more, else in a new run: write it into the returned slice, then call
    /// [`commit`](Self::commit) with its length (or [`abandon`](Self::abandon)).
    pub(crate) fn reserve(&mut self, room: usize, buffers: &mut Buffers) -> &mut [u8] {
        let max = self.max_segments();
        let joins = self
            .runs
            .back()
            .is_some_and(|run| run.open && run.count < max && run.used + room <= RUN_MAX_BYTES);
        if !joins {
            let buf = if max > 1 {
                buffers.first_of_run()
            } else {
                buffers.small()
            };
            self.runs.push_back(Run {
                buf,
                used: 0,
                segment: 0,
                count: 0,
                open: true,
            });
        }
        let Some(run) = self.runs.back_mut() else {
            unreachable!("a run was just pushed");
        };
        let end = run.used + room;
        if joins && end > run.buf.capacity() {
            // A run started in a small buffer moves to a large one when a second datagram
            // joins (once per run).
            let mut large = buffers.large();
            large.clear();
            large.extend_from_slice(&run.buf[..run.used]);
            buffers.give(std::mem::replace(&mut run.buf, large));
        }
        // Only bytes never used before are zeroed.
        if run.buf.len() < end {
            run.buf.resize(end, 0);
        }
        &mut run.buf[run.used..end]
    }

    /// The datagram [`reserve`](Self::reserve) gave room for is `len` bytes long.
    pub(crate) fn commit(&mut self, len: usize, buffers: &mut Buffers) {
        let Some(run) = self.runs.back_mut() else {
            return;
        };
        if run.count == 0 || len == run.segment {
            run.segment = if run.count == 0 { len } else { run.segment };
            run.used += len;
            run.count += 1;
        } else if len < run.segment {
            // The last of the run.
            run.used += len;
            run.count += 1;
            run.open = false;
        } else {
            // Longer than the run's datagrams: it starts a run of its own.
            let start = run.used;
            run.open = false;
            let mut buf = buffers.small();
            buf.clear();
            buf.extend_from_slice(&run.buf[start..start + len]);
            self.runs.push_back(Run {
                buf,
                used: len,
                segment: len,
                count: 1,
                open: true,
            });
        }
    }

    /// The datagram [`reserve`](Self::reserve) gave room for is not sent after all.
    pub(crate) fn abandon(&mut self, buffers: &mut Buffers) {
        if self.runs.back().is_some_and(|run| run.count == 0) {
            if let Some(run) = self.runs.pop_back() {
                buffers.give(run.buf);
            }
        }
    }

    /// Queues one whole datagram on its own.
    pub(crate) fn push(&mut self, datagram: Vec<u8>) {
        if let Some(run) = self.runs.back_mut() {
            run.open = false;
        }
        self.runs.push_back(Run {
            used: datagram.len(),
            segment: datagram.len(),
            buf: datagram,
            count: 1,
            open: false,
        });
    }

    /// Takes the runs out, oldest first: each as its bytes and, for more than one datagram,
    /// their size.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (Vec<u8>, Option<usize>)> + '_ {
        self.runs.drain(..).map(|mut run| {
            run.buf.truncate(run.used);
            (run.buf, (run.count > 1).then_some(run.segment))
        })
    }

    /// Drops everything waiting, keeping the buffers.
    pub(crate) fn clear(&mut self, buffers: &mut Buffers) {
        for run in self.runs.drain(..) {
            buffers.give(run.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(outbox: &mut Outbox, buffers: &mut Buffers, byte: u8, len: usize) {
        let room = outbox.reserve(len + 16, buffers);
        room[..len].fill(byte);
        outbox.commit(len, buffers);
    }

    fn runs(outbox: &mut Outbox) -> Vec<(Vec<u8>, Option<usize>)> {
        outbox.drain().collect()
    }

    #[test]
    fn equal_datagrams_join_until_a_shorter_one_ends_the_run() {
        let (mut o, mut b) = (Outbox::new(8), Buffers::default());
        for (byte, len) in [(1, 100), (2, 100), (3, 100), (4, 40), (5, 100)] {
            write(&mut o, &mut b, byte, len);
        }
        let runs = runs(&mut o);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].1, Some(100));
        let mut want = Vec::new();
        for (byte, len) in [(1u8, 100), (2, 100), (3, 100), (4, 40)] {
            want.extend(std::iter::repeat_n(byte, len));
        }
        assert_eq!(runs[0].0, want);
        assert_eq!(runs[1], (vec![5; 100], None));
    }

    #[test]
    fn a_longer_datagram_starts_its_own_run_and_max_segments_bounds_a_run() {
        let (mut o, mut b) = (Outbox::new(3), Buffers::default());
        for (byte, len) in [(1, 50), (2, 80), (3, 80), (4, 80), (5, 80)] {
            write(&mut o, &mut b, byte, len);
        }
        let runs = runs(&mut o);
        let shape: Vec<(usize, Option<usize>)> =
            runs.iter().map(|(buf, seg)| (buf.len(), *seg)).collect();
        assert_eq!(shape, [(50, None), (240, Some(80)), (80, None)]);
        assert_eq!(runs[1].0[..80], [2; 80]);
        assert_eq!(runs[1].0[80..160], [3; 80]);
        assert_eq!(runs[2].0, [5; 80]);
    }

    #[test]
    fn one_segment_keeps_every_datagram_alone_and_pushed_ones_close_the_run() {
        let (mut o, mut b) = (Outbox::new(1), Buffers::default());
        write(&mut o, &mut b, 1, 60);
        write(&mut o, &mut b, 2, 60);
        let singles = runs(&mut o);
        assert_eq!(singles, [(vec![1; 60], None), (vec![2; 60], None)]);

        let mut o = Outbox::new(8);
        write(&mut o, &mut b, 1, 60);
        o.push(vec![9; 60]);
        write(&mut o, &mut b, 2, 60);
        let shape: Vec<usize> = runs(&mut o).iter().map(|(buf, _)| buf.len()).collect();
        assert_eq!(shape, [60, 60, 60]);
    }

    #[test]
    fn an_abandoned_datagram_leaves_the_run_as_it_was() {
        let (mut o, mut b) = (Outbox::new(8), Buffers::default());
        write(&mut o, &mut b, 1, 60);
        let room = o.reserve(100, &mut b);
        room.fill(7);
        o.abandon(&mut b);
        write(&mut o, &mut b, 2, 60);
        // A fresh outbox: a datagram abandoned as the first of its run leaves no run.
        let mut fresh = Outbox::new(8);
        fresh.reserve(100, &mut b);
        fresh.abandon(&mut b);
        assert!(fresh.is_empty());
        let runs = runs(&mut o);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].1, Some(60));
        assert_eq!(runs[0].0[60..], [2; 60]);
    }

    #[test]
    fn reused_buffers_carry_no_bytes_of_their_last_use() {
        let (mut o, mut b) = (Outbox::new(8), Buffers::default());
        for _ in 0..3 {
            write(&mut o, &mut b, 0xee, 1200);
        }
        for (buf, _) in runs(&mut o) {
            b.give(buf);
        }
        write(&mut o, &mut b, 1, 10);
        write(&mut o, &mut b, 2, 10);
        let runs = runs(&mut o);
        assert_eq!(runs[0].0.len(), 20);
        assert_eq!(runs[0].0[..10], [1; 10]);
        assert_eq!(runs[0].0[10..], [2; 10]);
    }
}

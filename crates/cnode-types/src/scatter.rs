//! Reading an answer straight into the places its parts belong.
//!
//! A blob piece's answer interleaves 64-byte parent hashes with 16 KiB
//! leaves; the leaves must end up contiguous in an aligned buffer for one
//! `O_DIRECT` write. Rather than receiving the whole answer and copying the
//! leaves out, the receiver is told which byte ranges of the answer go where.

/// Where an answer's bytes go, if it is `frame_len` bytes long: the byte
/// ranges `runs` (offset, length; in order, not overlapping) one after
/// another into `tail` from `at`; everything else, in order, into a head
/// buffer. An answer of another length (an error, a refusal) is received
/// whole.
#[derive(Debug)]
pub struct Scatter {
    /// The answer length the plan is for.
    pub frame_len: usize,
    /// (offset in the answer, length) of the parts that go to `tail`.
    pub runs: Vec<(usize, usize)>,
    /// Initialised memory that the runs are read into, from `at`.
    pub tail: Vec<u8>,
    /// Where in `tail` the first run goes.
    pub at: usize,
}

impl Scatter {
    /// Bytes of the runs together.
    pub fn tail_len(&self) -> usize {
        self.runs.iter().map(|r| r.1).sum()
    }

    /// Whether the plan fits: runs in order, inside the answer, and room for
    /// them in `tail`.
    pub fn is_valid(&self) -> bool {
        let mut end = 0usize;
        for &(off, len) in &self.runs {
            if off < end {
                return false;
            }
            match off.checked_add(len) {
                Some(e) if e <= self.frame_len => end = e,
                _ => return false,
            }
        }
        self.at
            .checked_add(self.tail_len())
            .is_some_and(|e| e <= self.tail.len())
    }
}

/// An answer read with a [`Scatter`] plan.
#[derive(Debug)]
pub enum Scattered {
    /// Not of the planned length (an error, a refusal), or not read by a
    /// reader that scatters: the whole answer.
    Whole(Vec<u8>),
    /// Of the planned length: the bytes outside the runs, in order, and the
    /// plan with the runs' bytes in its `tail`.
    Split(Vec<u8>, Scatter),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_checked() {
        let plan = |runs: Vec<(usize, usize)>, tail: usize, at: usize| Scatter {
            frame_len: 100,
            runs,
            tail: vec![0; tail],
            at,
        };
        assert!(plan(vec![(10, 20), (40, 60)], 80, 0).is_valid());
        assert!(plan(vec![(10, 20), (40, 60)], 90, 10).is_valid());
        assert!(
            !plan(vec![(10, 20), (40, 60)], 89, 10).is_valid(),
            "no room"
        );
        assert!(
            !plan(vec![(40, 10), (10, 20)], 80, 0).is_valid(),
            "out of order"
        );
        assert!(
            !plan(vec![(10, 20), (25, 10)], 80, 0).is_valid(),
            "overlapping"
        );
        assert!(!plan(vec![(90, 20)], 80, 0).is_valid(), "past the end");
        assert!(!plan(vec![(usize::MAX, 2)], 80, 0).is_valid(), "overflow");
        assert_eq!(plan(vec![(10, 20), (40, 60)], 80, 0).tail_len(), 80);
    }
}

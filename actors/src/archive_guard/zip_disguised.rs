//! A zip member stored in name only: its method field says stored, its bytes are its content
//! deflated. clamd copies a stored member's bytes out as they are and scans them compressed; an
//! unzip tool extracts the same bytes (and fails their CRC). No one scans the content, whatever
//! the sizes say. When the sizes differ, the member is already malformed (`header_problem`);
//! when the deflated bytes happen to be exactly as many as the content's (incompressible
//! content, such as a gzip stream, deflates to about its own length), nothing else tells.
//!
//! So every stored member's bytes are also inflated on the side, as if the method said deflate
//! ([`DeflatedProbe`]). Random and compressed bytes break within a few bytes, so this costs
//! next to nothing for honest members. The member is disguised only when the probe proves it,
//! so that chance never makes one: what inflated has the CRC the member declares (its writer
//! computed it over the content before compressing it; the CRC of an honest stored member is the
//! one of its bytes), or more than `MaxFileSize` inflated without the stream breaking (no chance
//! stream does that). A stream that breaks after its content counts too: the CRC is the
//! content's.

use flate2::{Crc, Decompress, FlushDecompress, Status};

use super::context::{Context, Found};

/// A stored member's bytes, inflated on the side as a raw deflate stream, for their CRC.
pub(super) struct DeflatedProbe {
    inflater: Decompress,
    /// The CRC of what inflated so far.
    crc: Crc,
    /// Bytes inflated so far.
    produced: u64,
    /// The stream ended or broke: nothing more inflates.
    stopped: bool,
    /// More than `MaxFileSize` inflated without a break: a real deflate stream, not chance.
    long: bool,
}

impl DeflatedProbe {
    pub(super) fn new() -> Self {
        Self {
            inflater: Decompress::new(false),
            crc: Crc::new(),
            produced: 0,
            stopped: false,
            long: false,
        }
    }

    /// Inflates the member's next stored bytes; what inflates counts against the object's
    /// inflate budget at `depth`, so a stored deflate bomb costs no more than a deflated one.
    pub(super) fn feed(&mut self, mut input: &[u8], depth: usize, context: &mut Context) -> Found {
        if self.stopped || self.long {
            return Ok(());
        }
        let mut out = vec![0u8; 32 * 1024];
        while !self.stopped && !self.long {
            let (before_in, before_out) = (self.inflater.total_in(), self.inflater.total_out());
            let status = self.inflater.decompress(input, &mut out, FlushDecompress::None);
            let consumed = (self.inflater.total_in() - before_in) as usize;
            let produced = (self.inflater.total_out() - before_out) as usize;
            input = &input[consumed..];
            if produced > 0 {
                self.crc.update(&out[..produced]);
                self.produced += produced as u64;
                self.long = self.produced > context.limits.member_limit;
                context.extract(produced, depth)?;
            }
            match status {
                Ok(Status::StreamEnd) | Err(_) => self.stopped = true,
                Ok(_) if consumed == 0 && produced == 0 => break,
                Ok(_) => {}
            }
        }
        Ok(())
    }

    /// The CRC of what inflated, if anything did.
    pub(super) fn crc(&self) -> Option<u32> {
        (self.produced > 0).then(|| self.crc.sum())
    }

    /// The stored bytes are proven to be deflated content: what inflated has the CRC `declared`,
    /// or it was too long for chance.
    pub(super) fn proves(&self, declared: u32) -> bool {
        self.long || self.crc() == Some(declared)
    }
}

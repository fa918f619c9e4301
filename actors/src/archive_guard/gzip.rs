//! gzip, as clamd reads it (zlib in gzip mode): the header (with an extra field, a name and a
//! comment of any length, and a header CRC), the deflate stream, the trailer, and further
//! members after it, all inflated into one layer. A first header zlib rejects leaves clamd with
//! nothing to scan: unscannable. Data that is not a further member ends the stream, as it ends
//! zlib's (what came before it is scanned); what follows is searched for content clamd does not
//! open (a zip an unzip tool would find, another gzip).
//!
//! The same reader, as a [`probe`](GzipLayer::probe), tells a real gzip stream found inside other
//! data from a chance `1f 8b 08`: its first member must end with a trailer whose CRC and size
//! match what it inflated.

use flate2::{Crc, Decompress, FlushDecompress, Status};

use super::context::{Context, Extracted, Found, Region};
use super::finding::{ArchiveFinding, FindingKind};

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const RESERVED: u8 = 0xe0;

/// Where in a member the stream is.
#[derive(Clone, Copy)]
enum Part {
    /// The 10 fixed header bytes.
    Fixed,
    /// The extra field's length (2 bytes), then `Extra` of that many bytes.
    ExtraLength,
    Extra(usize),
    /// Up to a NUL.
    Name,
    Comment,
    /// The header's CRC (2 bytes).
    HeaderCrc,
    Body,
    /// CRC and size of the member (8 bytes).
    Trailer,
    /// Past the last member: whatever follows is not inflated, but searched.
    Done,
    /// The deflate stream broke: zlib stops, and what follows is the rest of a broken stream.
    Broken,
}

/// A layer that starts with gzip's magic.
pub(super) struct GzipLayer {
    depth: usize,
    part: Part,
    /// Bytes of the fixed header, the extra length, the header CRC or the trailer so far.
    pending: Vec<u8>,
    flags: u8,
    /// CRC of the header so far, for FHCRC.
    header_crc: Crc,
    /// Members begun; only the first one's header errors leave clamd with nothing.
    members: usize,
    inflater: Decompress,
    produced: u64,
    /// The decompressed content, one layer for all members.
    content: Option<Box<dyn Extracted>>,
    /// What follows the last member, searched for content clamd does not open.
    trailing: Option<Box<dyn Extracted>>,
    /// As a probe: the first member's CRC so far, and whether its trailer matched.
    probe: Option<Probe>,
}

/// A probe's view of the first member.
struct Probe {
    crc: Crc,
    verified: bool,
    dead: bool,
}

impl GzipLayer {
    pub(super) fn new(depth: usize) -> Self {
        Self {
            depth,
            part: Part::Fixed,
            pending: Vec::new(),
            flags: 0,
            header_crc: Crc::new(),
            members: 0,
            inflater: Decompress::new(false),
            produced: 0,
            content: None,
            trailing: None,
            probe: None,
        }
    }

    /// A reader that only tells whether the bytes fed to it start a real gzip stream: its first
    /// member's header, deflate stream and trailer (CRC and size) all hold. Nothing is extracted.
    pub(super) fn probe(depth: usize) -> Self {
        Self {
            probe: Some(Probe {
                crc: Crc::new(),
                verified: false,
                dead: false,
            }),
            ..Self::new(depth)
        }
    }

    /// For a probe: the stream proved real.
    pub(super) fn is_verified(&self) -> bool {
        self.probe.as_ref().is_some_and(|probe| probe.verified)
    }

    /// For a probe: the bytes are not a gzip stream (or it has proved real): feed no more.
    pub(super) fn is_done(&self) -> bool {
        self.probe.as_ref().is_some_and(|probe| probe.dead || probe.verified)
    }

    fn malformed(&self, what: &str) -> ArchiveFinding {
        ArchiveFinding::new(
            FindingKind::Malformed,
            self.depth,
            format!("gzip header: {what} (clamd scans none of it)"),
        )
    }

    /// Collects `need` bytes of a fixed-size part into `pending`; returns them when complete.
    fn collect(&mut self, need: usize, input: &mut &[u8]) -> Option<Vec<u8>> {
        let take = (need - self.pending.len()).min(input.len());
        self.pending.extend_from_slice(&input[..take]);
        *input = &input[take..];
        (self.pending.len() == need).then(|| std::mem::take(&mut self.pending))
    }

    /// The header part after the one of flag `done` (0: after the fixed bytes), in the order
    /// the optional parts come.
    fn after(&self, done: u8) -> Part {
        const ORDER: [(u8, Part); 4] = [
            (FEXTRA, Part::ExtraLength),
            (FNAME, Part::Name),
            (FCOMMENT, Part::Comment),
            (FHCRC, Part::HeaderCrc),
        ];
        let next = ORDER.iter().position(|(flag, _)| *flag == done).map_or(0, |at| at + 1);
        ORDER[next..]
            .iter()
            .find(|(flag, _)| self.flags & flag != 0)
            .map_or(Part::Body, |(_, part)| *part)
    }

    pub(super) fn feed(&mut self, mut input: &[u8], context: &mut Context) -> Found {
        while !input.is_empty() {
            match self.part {
                Part::Fixed => {
                    let Some(fixed) = self.collect(10, &mut input) else {
                        continue;
                    };
                    if fixed[..2] != [0x1f, 0x8b] || fixed[2] != 8 || fixed[3] & RESERVED != 0 {
                        if let Some(probe) = &mut self.probe {
                            probe.dead = true;
                            return Ok(());
                        }
                        if self.members == 0 {
                            return Err(self.malformed("not a deflate gzip header zlib accepts"));
                        }
                        // Not a further member: zlib stops here, keeping what it inflated.
                        self.part = Part::Done;
                        self.after_the_end(&fixed, context)?;
                        continue;
                    }
                    self.members += 1;
                    self.flags = fixed[3];
                    self.header_crc = Crc::new();
                    self.header_crc.update(&fixed);
                    self.part = self.after(0);
                }
                Part::ExtraLength => {
                    let Some(length) = self.collect(2, &mut input) else {
                        continue;
                    };
                    self.header_crc.update(&length);
                    self.part = Part::Extra(usize::from(u16::from_le_bytes([length[0], length[1]])));
                }
                Part::Extra(remaining) => {
                    let take = remaining.min(input.len());
                    self.header_crc.update(&input[..take]);
                    input = &input[take..];
                    self.part = match remaining - take {
                        0 => self.after(FEXTRA),
                        left => Part::Extra(left),
                    };
                }
                Part::Name | Part::Comment => {
                    let done = if matches!(self.part, Part::Name) {
                        FNAME
                    } else {
                        FCOMMENT
                    };
                    let end = memchr::memchr(0, input).map(|at| at + 1);
                    let take = end.unwrap_or(input.len());
                    self.header_crc.update(&input[..take]);
                    input = &input[take..];
                    if end.is_some() {
                        self.part = self.after(done);
                    }
                }
                Part::HeaderCrc => {
                    let Some(crc) = self.collect(2, &mut input) else {
                        continue;
                    };
                    let expected = (self.header_crc.sum() & 0xffff) as u16;
                    if u16::from_le_bytes([crc[0], crc[1]]) != expected {
                        if let Some(probe) = &mut self.probe {
                            probe.dead = true;
                            return Ok(());
                        }
                        return Err(self.malformed("its header CRC does not match"));
                    }
                    self.part = Part::Body;
                }
                Part::Body => input = self.inflate(input, context)?,
                Part::Trailer => {
                    let Some(trailer) = self.collect(8, &mut input) else {
                        continue;
                    };
                    if let Some(probe) = &mut self.probe {
                        let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
                        let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
                        // Either one matching is as unlikely by chance as both (one in 2^32).
                        probe.verified = crc == probe.crc.sum() || size == probe.crc.amount();
                        probe.dead = !probe.verified;
                        return Ok(());
                    }
                    self.inflater.reset(false);
                    self.part = Part::Fixed;
                }
                Part::Done => return self.after_the_end(input, context),
                Part::Broken => return Ok(()),
            }
        }
        Ok(())
    }

    /// Inflates from `input`; returns what is left of it after the member's stream.
    fn inflate<'a>(&mut self, mut input: &'a [u8], context: &mut Context) -> Result<&'a [u8], ArchiveFinding> {
        let mut out = vec![0u8; 32 * 1024];
        loop {
            let (before_in, before_out) = (self.inflater.total_in(), self.inflater.total_out());
            let status = self.inflater.decompress(input, &mut out, FlushDecompress::None);
            let consumed = (self.inflater.total_in() - before_in) as usize;
            let produced = (self.inflater.total_out() - before_out) as usize;
            input = &input[consumed..];
            self.produce(&out[..produced], context)?;
            match status {
                Ok(Status::StreamEnd) => {
                    self.part = Part::Trailer;
                    return Ok(input);
                }
                // zlib stops at a data error and clamd scans what came before it.
                Err(_) => {
                    if let Some(probe) = &mut self.probe {
                        probe.dead = true;
                    }
                    self.part = Part::Broken;
                    return Ok(&[]);
                }
                Ok(_) if consumed == 0 && produced == 0 => return Ok(input),
                Ok(_) => {}
            }
        }
    }

    fn produce(&mut self, content: &[u8], context: &mut Context) -> Found {
        if content.is_empty() {
            return Ok(());
        }
        self.produced += content.len() as u64;
        if let Some(probe) = &mut self.probe {
            probe.crc.update(content);
            // A deflate stream this long that never broke is no chance `1f 8b 08`.
            probe.verified |= self.produced > context.limits.member_limit;
            return context.extract(content.len(), self.depth);
        }
        if self.produced > context.limits.member_limit {
            return Err(ArchiveFinding::new(
                FindingKind::MemberExceedsLimit,
                self.depth + 1,
                format!("gzip content of more than {} bytes", context.limits.member_limit),
            ));
        }
        let layer = match &mut self.content {
            Some(layer) => layer,
            None => self.content.insert(context.open_layer(self.depth + 1)?),
        };
        layer.feed(content, context)
    }

    /// Bytes after the stream's end, searched for content a tool would find there.
    fn after_the_end(&mut self, bytes: &[u8], context: &mut Context) -> Found {
        if self.probe.is_some() || bytes.is_empty() {
            return Ok(());
        }
        let depth = self.depth;
        let trailing = self
            .trailing
            .get_or_insert_with(|| context.open_region(depth, Region::AfterTheEnd));
        trailing.feed(bytes, context)
    }

    pub(super) fn finish(&mut self, context: &mut Context) -> Found {
        // A stream cut short (even in its header) holds nothing more than clamd scanned of it.
        if let Some(layer) = &mut self.content {
            layer.finish(context)?;
        }
        if self.members > 0 && matches!(self.part, Part::Fixed) {
            // Fewer bytes than a header after the last member.
            let pending = std::mem::take(&mut self.pending);
            self.after_the_end(&pending, context)?;
        }
        match &mut self.trailing {
            Some(trailing) => trailing.finish(context),
            None => Ok(()),
        }
    }
}

//! The data of one zip member, taken as clamd takes it: stored bytes copied, a deflate stream
//! inflated (within the compressed size when the local header gives one, to the stream's end
//! otherwise), into a layer of its own one level down. It says how the data ended, so that the
//! zip layer can tell a member clamd scans whole from one it cuts, drops or never reaches, or
//! one stored in name only (`zip_disguised.rs`).

use flate2::{Decompress, FlushDecompress, Status};

use super::context::{Context, Extracted, Found};
use super::finding::{ArchiveFinding, FindingKind};
use super::zip_disguised::DeflatedProbe;
use super::zip_headers::{LocalHeader, DEFLATED, FLAG_DATA_DESCRIPTOR};

/// How a member's data is decoded.
pub(super) enum Decoder {
    Stored,
    Deflate(Box<Decompress>),
}

/// How a member's data ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Not yet: more compressed bytes are due.
    Open,
    /// Every byte decoded, the deflate stream (if any) ended where it should.
    Whole,
    /// The compressed size ran out before the deflate stream ended: clamd scans a prefix.
    Cut,
    /// The deflate stream is broken: clamd drops the whole member.
    Broken,
    /// Every byte copied, but the method says stored and the bytes are the content deflated:
    /// clamd scans them compressed.
    Disguised,
}

/// One member's data on its way into its layer.
pub(super) struct MemberData {
    decoder: Decoder,
    /// Compressed bytes still due; `None`: until the deflate stream ends (a data descriptor).
    remaining: Option<u64>,
    /// Compressed bytes taken so far.
    pub(super) consumed: u64,
    /// Bytes of content so far.
    produced: u64,
    /// The deflate stream ended (or broke); what remains of the compressed size is slack.
    stream_done: bool,
    broken: bool,
    /// The layer of the content, opened with its first byte.
    layer: Option<Box<dyn Extracted>>,
    /// The depth of that layer.
    depth: usize,
    /// A stored member's bytes inflated on the side, to tell one stored in name only.
    probe: Option<DeflatedProbe>,
    /// The CRC the local header declares, which that probe is checked against.
    declared_crc: u32,
}

impl MemberData {
    /// The data of the member `header` starts, whose content goes to a layer at `depth`: its
    /// compressed size, or to the deflate stream's end under a data descriptor.
    pub(super) fn new(header: &LocalHeader, depth: usize) -> Self {
        let decoder = decoder(header.method);
        let probe = matches!(decoder, Decoder::Stored).then(DeflatedProbe::new);
        Self {
            decoder,
            remaining: (!header.has(FLAG_DATA_DESCRIPTOR)).then_some(u64::from(header.csize)),
            consumed: 0,
            produced: 0,
            stream_done: false,
            broken: false,
            layer: None,
            depth,
            probe,
            declared_crc: header.crc,
        }
    }

    /// For a stored member, the CRC of what its bytes inflate to as a deflate stream, if they
    /// inflate to anything: a central directory may declare it too.
    pub(super) fn inflated_crc(&self) -> Option<u32> {
        self.probe.as_ref()?.crc()
    }

    /// The depth of the member's layer.
    pub(super) fn depth(&self) -> usize {
        self.depth
    }

    /// How the data ended so far.
    pub(super) fn ending(&self) -> Ending {
        match (self.remaining, self.stream_done) {
            (Some(0), _) if self.broken => Ending::Broken,
            (Some(0), _) if self.probe.as_ref().is_some_and(|probe| probe.proves(self.declared_crc)) => {
                Ending::Disguised
            }
            (Some(0), true) => Ending::Whole,
            (Some(0), false) if matches!(self.decoder, Decoder::Stored) => Ending::Whole,
            (Some(0), false) => Ending::Cut,
            (None, true) if self.broken => Ending::Broken,
            (None, true) => Ending::Whole,
            _ => Ending::Open,
        }
    }

    /// Takes the member's bytes from the start of `input`; returns how many it took (it stops
    /// at its end, or takes all).
    pub(super) fn feed(&mut self, input: &[u8], context: &mut Context) -> Result<usize, ArchiveFinding> {
        let available = match self.remaining {
            Some(remaining) => input.len().min(usize::try_from(remaining).unwrap_or(usize::MAX)),
            None if self.stream_done => 0,
            None => input.len(),
        };
        let input = &input[..available];
        let taken = if self.stream_done {
            // Slack after the deflate stream, within the compressed size: clamd reads past it.
            input.len()
        } else {
            match &mut self.decoder {
                Decoder::Stored => {
                    if let Some(probe) = &mut self.probe {
                        probe.feed(input, self.depth, context)?;
                    }
                    self.produce(input, context)?;
                    input.len()
                }
                Decoder::Deflate(_) => self.inflate(input, context)?,
            }
        };
        self.consumed += taken as u64;
        if let Some(remaining) = &mut self.remaining {
            *remaining -= taken as u64;
        }
        Ok(taken)
    }

    fn inflate(&mut self, mut input: &[u8], context: &mut Context) -> Result<usize, ArchiveFinding> {
        let mut out = vec![0u8; 32 * 1024];
        let mut taken = 0;
        loop {
            let (status, consumed, produced) = {
                let Decoder::Deflate(inflater) = &mut self.decoder else {
                    unreachable!("only called for deflate")
                };
                let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
                let status = inflater.decompress(input, &mut out, FlushDecompress::None);
                let consumed = (inflater.total_in() - before_in) as usize;
                (status, consumed, (inflater.total_out() - before_out) as usize)
            };
            input = &input[consumed..];
            taken += consumed;
            match status {
                Ok(Status::StreamEnd) => self.stream_done = true,
                Err(_) => {
                    self.stream_done = true;
                    self.broken = true;
                }
                Ok(_) => {}
            }
            self.produce(&out[..produced], context)?;
            if self.stream_done || (consumed == 0 && produced == 0) {
                break;
            }
        }
        if self.stream_done && self.remaining.is_some() {
            // The rest of the compressed size is slack.
            taken += input.len();
        }
        Ok(taken)
    }

    fn produce(&mut self, content: &[u8], context: &mut Context) -> Found {
        if content.is_empty() {
            return Ok(());
        }
        self.produced += content.len() as u64;
        if self.produced > context.limits.member_limit {
            return Err(ArchiveFinding::new(
                FindingKind::MemberExceedsLimit,
                self.depth,
                format!(
                    "a member of more than {} bytes (clamd cuts it there)",
                    context.limits.member_limit
                ),
            ));
        }
        let layer = match &mut self.layer {
            Some(layer) => layer,
            None => self.layer.insert(context.open_layer(self.depth)?),
        };
        layer.feed(content, context)
    }

    /// The end of the member's content: its layer's end.
    pub(super) fn finish(&mut self, context: &mut Context) -> Found {
        match &mut self.layer {
            Some(layer) => layer.finish(context),
            None => Ok(()),
        }
    }
}

/// What an ended member's data says about clamd's view of it.
pub(super) fn ending_problem(ending: Ending, depth: usize) -> Option<ArchiveFinding> {
    match ending {
        Ending::Cut => Some(ArchiveFinding::new(
            FindingKind::Malformed,
            depth,
            "zip member whose deflate stream runs past its compressed size (clamd scans a prefix)",
        )),
        Ending::Broken => Some(ArchiveFinding::new(
            FindingKind::Malformed,
            depth,
            "zip member with a broken deflate stream (clamd drops it)",
        )),
        Ending::Disguised => Some(disguised(depth)),
        Ending::Open | Ending::Whole => None,
    }
}

/// A member stored in name only, proven by its local header's CRC or its central entry's.
pub(super) fn disguised(depth: usize) -> ArchiveFinding {
    ArchiveFinding::new(
        FindingKind::Malformed,
        depth,
        "zip member stored in name only: its bytes are its content deflated (clamd scans them compressed)",
    )
}

fn decoder(method: u16) -> Decoder {
    if method == DEFLATED {
        Decoder::Deflate(Box::new(Decompress::new(false)))
    } else {
        Decoder::Stored
    }
}

/// A candidate's data, followed beside the search.
pub(super) struct Follower {
    pub(super) member: usize,
    /// The layer offset of the next byte it needs.
    pub(super) next: u64,
    pub(super) data: MemberData,
}

/// Feeds every follower the bytes it is due from `window` (which starts at layer offset
/// `base`); ended followers leave. With `deferred`, a follower's finding is kept on its member
/// (a candidate, counted only if the directory names it) instead of being returned.
pub(super) fn follow(
    followers: &mut Vec<Follower>,
    members: &mut [Member],
    base: u64,
    window: &[u8],
    context: &mut Context,
    deferred: bool,
) -> Found {
    let mut index = 0;
    while index < followers.len() {
        let follower = &mut followers[index];
        let from = usize::try_from(follower.next.saturating_sub(base)).unwrap_or(usize::MAX);
        let mut result = match window.get(from..) {
            Some(bytes) if !bytes.is_empty() => follower.data.feed(bytes, context).map(|taken| {
                follower.next += taken as u64;
            }),
            _ => Ok(()),
        };
        let ending = follower.data.ending();
        let done = result.is_err() || ending != Ending::Open;
        if ending != Ending::Open && result.is_ok() {
            result = match ending_problem(ending, follower.data_depth()) {
                Some(problem) => Err(problem),
                None => follower.data.finish(context),
            };
            members[follower.member].compressed = Some(follower.data.consumed);
            members[follower.member].inflated_crc = follower.data.inflated_crc();
        }
        if let Err(problem) = result {
            if !deferred {
                return Err(problem);
            }
            let member = &mut members[follower.member];
            member.problem.get_or_insert(problem);
        }
        if done {
            context.followers -= 1;
            followers.swap_remove(index);
        } else {
            index += 1;
        }
    }
    Ok(())
}

impl Follower {
    pub(super) fn data_depth(&self) -> usize {
        self.data.depth()
    }
}

/// A member found by the walk (or as a candidate in a gap).
pub(super) struct Member {
    pub(super) offset: u64,
    pub(super) header: LocalHeader,
    /// Found by the walk from offset 0 (a member any sequential unzip sees), not in a gap.
    pub(super) walked: bool,
    /// Why clamd's scan of it would be incomplete; for candidates, counted only if named.
    pub(super) problem: Option<ArchiveFinding>,
    /// Compressed bytes of its data, once they ended inside the layer.
    pub(super) compressed: Option<u64>,
    /// For a stored member, once its data ended: the CRC of what its bytes inflate to.
    pub(super) inflated_crc: Option<u32>,
}

impl Member {
    pub(super) fn has_content(&self) -> bool {
        self.header.csize > 0 || self.header.has(FLAG_DATA_DESCRIPTOR)
    }
}

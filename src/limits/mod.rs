//! Start-up check of the one clamd limit avscan cannot see from outside: `MaxFileSize`. An
//! archive member larger than it is skipped by clamd without an alert (Cisco-Talos/clamav#633),
//! and the [`ArchiveGuard`](avscan_actors::archive_guard) only closes that hole if its limit,
//! `CLAMD_MAX_FILE_SIZE`, is not above clamd's. So avscan scans a canary before it starts: a
//! gzip of exactly `CLAMD_MAX_FILE_SIZE` zero bytes (a few hundred KB on the wire). clamd says
//! `OK` if it scans a file that large completely, and `Heuristics.Limits.Exceeded.MaxFileSize`
//! (with `AlertExceedsMax yes`, which avscan requires) if its limit is lower: then avscan
//! refuses to start rather than let such members through.

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress};
use futures::StreamExt;

use avscan_actors::model::Verdict;
use avscan_actors::ports::{ObjectBody, ScanEngine, ScanError};

use crate::clamd::Clamd;

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error(
        "clamd does not scan files of CLAMD_MAX_FILE_SIZE ({limit_mb} MB) completely (it answered {answer}): \
         lower CLAMD_MAX_FILE_SIZE to clamd's MaxFileSize, or raise MaxFileSize (and MaxScanSize) in clamd.conf"
    )]
    BelowLimit { limit_mb: u64, answer: String },
    #[error("could not check clamd's MaxFileSize: {0}")]
    Scan(#[from] ScanError),
}

const BLOCK: usize = 1 << 20;

/// A gzip file of `len` zero bytes, built from one deflated megabyte repeated, so that even a
/// canary of gigabytes costs nothing to make.
pub fn zeros_gzip(len: u64) -> Vec<Bytes> {
    let zeros = vec![0u8; BLOCK];
    let mut compress = Compress::new(Compression::best(), false);
    let mut deflate = |input: &[u8], flush: FlushCompress| -> Bytes {
        let mut out = Vec::with_capacity(input.len() / 100 + 1024);
        let start = compress.total_in();
        loop {
            let consumed = (compress.total_in() - start) as usize;
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            compress
                .compress_vec(&input[consumed..], &mut out, flush)
                .expect("deflating zeros cannot fail");
            let done = (compress.total_in() - start) as usize == input.len();
            if done && out.len() < out.capacity() {
                return Bytes::from(out);
            }
        }
    };
    let blocks = len / BLOCK as u64;
    let remainder = (len % BLOCK as u64) as usize;
    let mut parts = vec![Bytes::from_static(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])];
    if blocks > 0 {
        parts.push(deflate(&zeros, FlushCompress::Sync));
    }
    if blocks > 1 {
        // After the first megabyte the window holds only zeros: every further megabyte encodes
        // to the same bytes.
        let steady = deflate(&zeros, FlushCompress::Sync);
        parts.extend(std::iter::repeat_n(steady, blocks as usize - 1));
    }
    parts.push(deflate(&zeros[..remainder], FlushCompress::Sync));
    parts.push(deflate(&[], FlushCompress::Finish));

    let mut block_crc = Crc::new();
    block_crc.update(&zeros);
    let mut crc = Crc::new();
    for _ in 0..blocks {
        crc.combine(&block_crc);
    }
    crc.update(&zeros[..remainder]);
    let mut trailer = crc.sum().to_le_bytes().to_vec();
    trailer.extend_from_slice(&(len as u32).to_le_bytes());
    parts.push(Bytes::from(trailer));
    parts
}

/// Scans the canary; `Ok` when clamd scans a file of `limit` bytes completely.
pub async fn verify_member_limit(clamd: &Clamd, limit: u64) -> Result<(), LimitError> {
    let parts = zeros_gzip(limit);
    let content_length = parts.iter().map(|part| part.len() as u64).sum();
    let mut session = clamd.connect().await?;
    let outcome = session
        .scan(ObjectBody {
            content_length,
            chunks: futures::stream::iter(parts.into_iter().map(Ok)).boxed(),
        })
        .await?;
    match outcome.verdict {
        Verdict::Clean => Ok(()),
        other => Err(LimitError::BelowLimit {
            limit_mb: limit / (1024 * 1024),
            answer: other.signature().unwrap_or(other.label()).to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn the_canary_is_a_valid_gzip_of_exactly_so_many_zeros() {
        for len in [0, 1, BLOCK as u64 - 1, BLOCK as u64, 3 * BLOCK as u64 + 5] {
            let bytes: Vec<u8> = zeros_gzip(len).concat();
            let mut decoded = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut decoded)
                .unwrap();
            assert_eq!(decoded.len() as u64, len);
            assert!(decoded.iter().all(|&b| b == 0));
        }
        // Small on the wire, whatever the size it stands for.
        let large: usize = zeros_gzip(400 * BLOCK as u64).iter().map(Bytes::len).sum();
        assert!(large < 1024 * 1024, "{large} bytes");
    }
}

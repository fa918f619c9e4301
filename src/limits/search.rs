//! Discovering clamd's `MaxFileSize` when `CLAMD_MAX_FILE_SIZE` is not set: an exponential
//! then binary search over file sizes, to 1 MB resolution, asking a [`SizeProbe`] whether clamd
//! would scan a file of that size completely. Pure logic over the probe, so it is tested on a
//! fake; `mod.rs` supplies the probes that ask the real clamd.

use avscan_actors::defaults::MIB;
use avscan_actors::ports::ScanError;

/// Which of clamd's size limits a file passed, named as clamd names it in its alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeLimit {
    /// `Heuristics.Limits.Exceeded.MaxFileSize`.
    MaxFileSize,
    /// `Heuristics.Limits.Exceeded.MaxScanSize`: clamd checks it first, so it hides
    /// `MaxFileSize` wherever it is lower.
    MaxScanSize,
}

impl SizeLimit {
    /// The limit a `<signature> FOUND` names, if it names one of these.
    pub fn from_signature(signature: &str) -> Option<SizeLimit> {
        match signature {
            "Heuristics.Limits.Exceeded.MaxFileSize" => Some(SizeLimit::MaxFileSize),
            "Heuristics.Limits.Exceeded.MaxScanSize" => Some(SizeLimit::MaxScanSize),
            _ => None,
        }
    }
}

/// What clamd made of a file of a given size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// `stream: OK`: scanned completely.
    Within,
    /// Over that limit (clamd alerted).
    Over(SizeLimit),
    /// Any other answer, as clamd gave it: the search cannot go on.
    Other(String),
}

/// Asks clamd about a file of `size` bytes.
pub trait SizeProbe {
    /// What clamd answers for a file of `size` bytes; an error means it did not answer.
    fn reach(&mut self, size: u64) -> impl std::future::Future<Output = Result<Reach, ScanError>> + Send;
}

/// Where the search ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The largest size in MB that clamd scans completely; 0 if it does not scan even 1 MB.
    pub within_mb: u64,
    /// The smallest size in MB it does not (`within_mb + 1`), and the limit it named there;
    /// `None` if everything up to the search's maximum passed.
    pub over: Option<(u64, SizeLimit)>,
    /// How many sizes were probed.
    pub probes: u32,
}

/// Why the search could not finish.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// clamd gave an answer that is neither OK nor a size limit.
    #[error("a file of {size} bytes answered {answer}")]
    Unexpected { size: u64, answer: String },
    /// clamd did not answer.
    #[error(transparent)]
    Scan(#[from] ScanError),
}

/// Probes 1, 2, 4, … MB (up to `max_mb`) until a size is over a limit, then halves the gap
/// between the last size within and the first one over until they are 1 MB apart. About
/// 2·log2(MaxFileSize in MB) probes: 18 for 400 MB.
pub async fn search(probe: &mut impl SizeProbe, max_mb: u64) -> Result<Found, SearchError> {
    let mut probes = 0;
    let mut within_mb = 0;
    let mut mb = 1.min(max_mb);
    let mut over = None;
    while mb > within_mb {
        match ask(probe, &mut probes, mb).await? {
            None => within_mb = mb,
            Some(limit) => {
                over = Some((mb, limit));
                break;
            }
        }
        mb = (mb * 2).min(max_mb);
    }
    if let Some((mut over_mb, mut limit)) = over {
        while over_mb - within_mb > 1 {
            let middle = within_mb + (over_mb - within_mb) / 2;
            match ask(probe, &mut probes, middle).await? {
                None => within_mb = middle,
                Some(named) => (over_mb, limit) = (middle, named),
            }
        }
        over = Some((over_mb, limit));
    }
    Ok(Found {
        within_mb,
        over,
        probes,
    })
}

/// One probe of `mb` megabytes: `None` if clamd scans it completely, else the limit it named.
async fn ask(probe: &mut impl SizeProbe, probes: &mut u32, mb: u64) -> Result<Option<SizeLimit>, SearchError> {
    *probes += 1;
    let size = mb * MIB;
    match probe.reach(size).await? {
        Reach::Within => Ok(None),
        Reach::Over(limit) => Ok(Some(limit)),
        Reach::Other(answer) => Err(SearchError::Unexpected { size, answer }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clamd reduced to `cli_checklimits`: MaxScanSize (less what the canary itself costs)
    /// first, then MaxFileSize; 0 disables a limit, as in clamd.conf.
    struct FakeClamd {
        max_file_size: u64,
        max_scan_size: u64,
        canary_overhead: u64,
        asked: Vec<u64>,
    }

    impl FakeClamd {
        fn new(max_file_size: u64, max_scan_size: u64) -> Self {
            Self {
                max_file_size,
                max_scan_size,
                canary_overhead: 1536,
                asked: Vec::new(),
            }
        }
    }

    impl SizeProbe for FakeClamd {
        async fn reach(&mut self, size: u64) -> Result<Reach, ScanError> {
            self.asked.push(size);
            Ok(
                if self.max_scan_size != 0 && self.max_scan_size - self.canary_overhead < size {
                    Reach::Over(SizeLimit::MaxScanSize)
                } else if self.max_file_size != 0 && self.max_file_size < size {
                    Reach::Over(SizeLimit::MaxFileSize)
                } else {
                    Reach::Within
                },
            )
        }
    }

    async fn search_fake(max_file_size: u64, max_scan_size: u64) -> (Found, Vec<u64>) {
        let mut fake = FakeClamd::new(max_file_size, max_scan_size);
        let found = search(&mut fake, 4095).await.unwrap();
        assert_eq!(found.probes as usize, fake.asked.len());
        (found, fake.asked)
    }

    #[tokio::test]
    async fn finds_every_whole_megabyte_limit_exactly_in_few_probes() {
        for mb in (1..=2047).step_by(7).chain([1, 2, 3, 25, 100, 400, 1024, 2047]) {
            let (found, asked) = search_fake(mb * MIB, 4000 * MIB).await;
            assert_eq!(found.within_mb, mb, "MaxFileSize {mb}M");
            assert_eq!(found.over, Some((mb + 1, SizeLimit::MaxFileSize)), "MaxFileSize {mb}M");
            assert!(found.probes <= 24, "{} probes for {mb}M", found.probes);
            assert!(asked.iter().all(|&size| size % MIB == 0 && size <= 4095 * MIB));
        }
        let (found, asked) = search_fake(400 * MIB, 1600 * MIB).await;
        assert_eq!(found.probes, 18);
        assert_eq!(
            &asked[..10],
            &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512].map(|mb| mb * MIB)
        );
    }

    #[tokio::test]
    async fn a_limit_between_megabytes_is_floored() {
        let (found, _) = search_fake(25 * MIB + 12_345, 400 * MIB).await;
        assert_eq!(found.within_mb, 25);
        assert_eq!(found.over, Some((26, SizeLimit::MaxFileSize)));
        // clamd's own cap (INT_MAX - 2 bytes).
        let (found, _) = search_fake(i32::MAX as u64 - 2, 0).await;
        assert_eq!(found.within_mb, 2047);
        assert_eq!(found.over, Some((2048, SizeLimit::MaxFileSize)));
    }

    #[tokio::test]
    async fn a_lower_max_scan_size_is_what_the_search_runs_into() {
        let (found, _) = search_fake(10 * MIB, 5 * MIB).await;
        assert_eq!(found.within_mb, 4);
        assert_eq!(found.over, Some((5, SizeLimit::MaxScanSize)));
        // Equal limits: the canary's own bytes count against MaxScanSize.
        let (found, _) = search_fake(10 * MIB, 10 * MIB).await;
        assert_eq!(found.over, Some((10, SizeLimit::MaxScanSize)));
    }

    #[tokio::test]
    async fn below_one_megabyte_and_above_the_maximum_are_reported_as_such() {
        let (found, asked) = search_fake(500_000, 0).await;
        assert_eq!((found.within_mb, found.over), (0, Some((1, SizeLimit::MaxFileSize))));
        assert_eq!(asked, vec![MIB]);
        // Limits off: everything passes, up to the maximum and not beyond.
        let (found, asked) = search_fake(0, 0).await;
        assert_eq!((found.within_mb, found.over), (4095, None));
        assert_eq!(asked.last(), Some(&(4095 * MIB)));
        assert_eq!(asked.len(), 13);
    }

    #[tokio::test]
    async fn an_answer_that_is_no_size_limit_stops_the_search() {
        struct Odd;
        impl SizeProbe for Odd {
            async fn reach(&mut self, size: u64) -> Result<Reach, ScanError> {
                Ok(if size < 8 * MIB {
                    Reach::Within
                } else {
                    Reach::Other("Heuristics.Limits.Exceeded.MaxScanTime".into())
                })
            }
        }
        let err = search(&mut Odd, 4095).await.unwrap_err();
        assert!(
            matches!(&err, SearchError::Unexpected { size, answer } if *size == 8 * MIB && answer.ends_with("MaxScanTime")),
            "{err}"
        );
    }
}

//! The differential test of avscan's archive handling against the real clamd. Seeded archive
//! structures (`tests/common/archive_gen.rs`: zip, gzip and tar nested in any order and depth,
//! with the test signature at the deepest point) are streamed as the pipeline's scanner streams
//! an object: through the archive guard into a clamd session of the test's own, whose limits
//! are small so that the objects stay small.
//!
//! The property, for every object: **clamd alone reports the signature, or avscan's verdict for
//! the same bytes is not clean** (unscannable, or the signature) — never clean. One kind of
//! object is counted apart, not held to it: the signature where no tool finds it without
//! carving bytes out by hand ([`Object::needs_carving`]), which README "Guarantees" lists as not
//! covered.
//!
//! `make test` runs [`OBJECTS`] objects from a fixed seed, so CI is reproducible; `make fuzz`
//! runs `FUZZ_OBJECTS` from `FUZZ_SEED` (random unless given; printed). Either prints one summary
//! line. On failure it shrinks the failing objects to minimal structures and prints every
//! distinct failing kind with one minimal repro each, then fails. `FUZZ_REPLAY=<object seed>`
//! scans just that object and prints what clamd and avscan said (`FUZZ_DUMP=<file>` also
//! writes its bytes there).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use avscan::clamd::Clamd;
use avscan_actors::archive_guard::{self, GuardLimits};
use avscan_actors::model::{ScanOutcome, Verdict};
use avscan_actors::ports::{ObjectBody, ScanEngine, ScanError, ScanSession};
use bytes::Bytes;
use common::archive_gen::{self, Builder, Object, MAX_FILE_SIZE, MAX_RECURSION, MAX_SCAN_SIZE};
use common::LocalClamd;
use futures::StreamExt;

/// Objects in `make test`.
const OBJECTS: usize = 2_000;
/// The seed of `make test`: fixed, so every run scans the same objects.
const SEED: u64 = 0x0a5c_a11d_d1ff_0001;
/// Concurrent clamd sessions.
const SESSIONS: usize = 4;
/// One object's scan, retried once, must end within this.
const SCAN_TIMEOUT: Duration = Duration::from_secs(60);
/// Time for shrinking failures to minimal repros (`FUZZ_SHRINK_SECS` to change).
const SHRINK_TIME: Duration = Duration::from_secs(30);
/// Candidate scans for shrinking one failure.
const SHRINK_SCANS: usize = 400;
/// Failures shrunk per probed trait, at most (see `failure_kinds`).
const PROBE_EXAMPLES: usize = 3;

/// clamd with small limits: objects stay small, and every limit is within reach of a few KB on
/// the wire. The alerts are on, as avscan requires of any clamd.
fn clamd_config() -> String {
    format!(
        "MaxFileSize {}\nMaxScanSize {}\nMaxRecursion {MAX_RECURSION}\nStreamMaxLength 64M\n\
         AlertExceedsMax yes\nAlertEncrypted yes\nMaxThreads {}",
        MAX_FILE_SIZE,
        MAX_SCAN_SIZE,
        SESSIONS * 2
    )
}

/// What clamd alone and avscan said about one object.
#[derive(Debug, Clone)]
struct Verdicts {
    /// clamd's own outcome.
    clamd: Verdict,
    /// The pipeline's verdict: clamd's outcome as the archive guard lets it stand.
    avscan: Verdict,
    /// The guard alone would not have let a clean verdict stand.
    guard_flagged: bool,
}

/// avscan's verdict on `bytes`, reached exactly as the pipeline's scanner reaches it
/// (actors/src/stages/scanner.rs, src/scan.rs): the body, in `chunk`-byte chunks, streamed through
/// the archive guard into a clamd session, and the guard's judgement applied to clamd's outcome.
/// Also clamd's own outcome, and whether the guard alone flagged the object (its judgement
/// applied to a clean outcome).
///
/// The guard's API is being rewritten (fail closed, limits tied to clamd's, work off the async
/// runtime): this is the one function that calls it. After the rewrite it reads roughly
/// `check_while_streaming(body, GuardLimits { member_limit, inflate_budget, .. })` and
/// `archive_check.apply(outcome).await`.
async fn scan_through_guard(
    session: &mut Box<dyn ScanSession>,
    bytes: Bytes,
    chunk: usize,
) -> Result<Verdicts, ScanError> {
    let chunk = if chunk == 0 { bytes.len().max(1) } else { chunk };
    let chunks: Vec<Result<Bytes, _>> = (0..bytes.len())
        .step_by(chunk)
        .map(|at| Ok(bytes.slice(at..(at + chunk).min(bytes.len()))))
        .collect();
    let body = ObjectBody {
        content_length: bytes.len() as u64,
        chunks: futures::stream::iter(chunks).boxed(),
    };
    let limits = GuardLimits {
        member_limit: MAX_FILE_SIZE as u64,
        inflate_budget: MAX_SCAN_SIZE as u64,
    };
    let (guarded, archive_check) = archive_guard::check_while_streaming(body, limits);
    let outcome = session.scan_and_confirm(guarded).await?;
    let clamd = outcome.verdict.clone();
    // The guard's own judgement, asked with a clean verdict, says whether it flagged the object;
    // the pipeline's verdict is then clamd's unless clamd said clean, exactly as `apply` does.
    let probe = ScanOutcome {
        verdict: Verdict::Clean,
        engine: outcome.engine.clone(),
        definitions: outcome.definitions,
        sha256: None,
        allowed_by: None,
    };
    let judged = archive_check.apply(probe).await.verdict;
    let guard_flagged = judged != Verdict::Clean;
    let avscan = if clamd == Verdict::Clean { judged } else { clamd.clone() };
    Ok(Verdicts {
        clamd,
        avscan,
        guard_flagged,
    })
}

/// clamd found the test signature itself (not a limit or another heuristic).
fn found_signature(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Infected { signature }
        if signature.starts_with("Avscan.Test.Marker") || signature.starts_with("Eicar-Test-Signature"))
}

fn describe(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Clean => "OK".into(),
        Verdict::Infected { signature } => format!("{signature} FOUND"),
        Verdict::Unscannable { reason, signature } => format!(
            "unscannable ({})",
            signature.clone().unwrap_or_else(|| reason.as_str().to_owned())
        ),
    }
}

/// One object and what was said about it.
struct Scanned {
    /// The object's own seed (`FUZZ_REPLAY`), if it was generated from one.
    seed: Option<u64>,
    object: Object,
    wire: usize,
    result: Result<Verdicts, String>,
}

impl Scanned {
    /// avscan said clean: a failure, unless the signature sits where only carving finds it.
    fn let_through(&self) -> bool {
        self.said_clean() && !self.object.needs_carving()
    }

    fn said_clean(&self) -> bool {
        matches!(&self.result, Ok(verdicts) if verdicts.avscan == Verdict::Clean)
    }
}

/// Scans one object; a failed session is replaced and the scan tried once more.
async fn scan_one(
    client: &Clamd,
    session: &mut Option<Box<dyn ScanSession>>,
    bytes: Bytes,
    chunk: usize,
) -> Result<Verdicts, String> {
    let mut last_error = String::new();
    for _ in 0..2 {
        if session.as_mut().is_some_and(|session| !session.is_reusable()) {
            *session = None;
        }
        let current = match session {
            Some(current) => current,
            None => match client.connect().await {
                Ok(new) => session.insert(new),
                Err(err) => {
                    last_error = err.to_string();
                    continue;
                }
            },
        };
        match tokio::time::timeout(SCAN_TIMEOUT, scan_through_guard(current, bytes.clone(), chunk)).await {
            Ok(Ok(verdicts)) => return Ok(verdicts),
            Ok(Err(err)) => last_error = err.to_string(),
            Err(_) => last_error = format!("no verdict within {SCAN_TIMEOUT:?}"),
        }
        *session = None;
    }
    Err(last_error)
}

/// Scans `count` objects, `object(i)` each, over [`SESSIONS`] sessions; results in order.
async fn scan_many<F>(client: &Clamd, count: usize, object: F) -> Vec<Scanned>
where
    F: Fn(usize) -> (Option<u64>, Object) + Send + Sync + 'static,
{
    let object = Arc::new(object);
    let next = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Option<Scanned>>>> = Arc::new(Mutex::new((0..count).map(|_| None).collect()));
    let workers: Vec<_> = (0..SESSIONS.min(count))
        .map(|_| {
            let (client, object, next, results) = (client.clone(), object.clone(), next.clone(), results.clone());
            tokio::spawn(async move {
                let mut builder = Builder::default();
                let mut session = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let (seed, object) = object(i);
                    let bytes = Bytes::from(object.bytes(&mut builder));
                    let wire = bytes.len();
                    let result = scan_one(&client, &mut session, bytes, object.chunk).await;
                    results.lock().unwrap()[i] = Some(Scanned {
                        seed,
                        object,
                        wire,
                        result,
                    });
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("scan worker panicked");
    }
    let results = std::mem::take(&mut *results.lock().unwrap());
    results
        .into_iter()
        .map(|scanned| scanned.expect("every object scanned"))
        .collect()
}

/// Greedy shrinking: the first simpler variant that still fails (and that `keep` accepts)
/// replaces the object, until none does or `budget` scans are spent. Candidates are scanned a
/// batch at a time, in parallel.
async fn shrink(
    client: &Clamd,
    object: Object,
    keep: impl Fn(&Object) -> bool,
    mut budget: usize,
    deadline: Instant,
) -> Object {
    let mut current = object;
    'simpler: while budget > 0 && Instant::now() < deadline {
        let candidates: Vec<Object> = current
            .simpler()
            .into_iter()
            .filter(|candidate| keep(candidate))
            .collect();
        for batch in candidates.chunks(SESSIONS * 2) {
            let batch = batch[..batch.len().min(budget)].to_vec();
            budget -= batch.len();
            if let Some(failing) = first_failing(client, batch).await {
                current = failing;
                continue 'simpler;
            }
            if budget == 0 || Instant::now() >= deadline {
                break 'simpler;
            }
        }
        break;
    }
    current
}

/// The first of `objects` that avscan lets through as clean, if any.
async fn first_failing(client: &Clamd, objects: Vec<Object>) -> Option<Object> {
    let count = objects.len();
    let scanned = scan_many(client, count, move |i| (None, objects[i].clone())).await;
    scanned
        .into_iter()
        .find(Scanned::let_through)
        .map(|scanned| scanned.object)
}

/// A distinct way avscan lets the signature through.
struct FailureKind {
    minimal: Object,
    /// The failure it was shrunk from.
    example_seed: Option<u64>,
    example: Object,
    /// Failures counted under it (those that contain its traits).
    count: usize,
    /// The trait it was found by probing, when shrinking had to keep it (see [`failure_kinds`]).
    probe: Option<String>,
}

/// Prints how failures are grouped, with `FUZZ_VERBOSE` set.
fn verbose(line: std::fmt::Arguments) {
    if env("FUZZ_VERBOSE").is_some() {
        eprintln!("differential: {line}");
    }
}

/// Traits that are structure, not an attribute a shrink step can reset: probed first.
fn structural(name: &str) -> bool {
    name.starts_with("inflating layers") || name.starts_with("layers≥")
}

/// Groups the failures into kinds, each with a minimal repro, until `deadline`.
///
/// First the simplest failure not yet explained by a known kind is shrunk; every failure that
/// contains the traits of its minimal repro counts as explained. That hides causes that rarely
/// come alone (a structure nested past the guard's depth nearly always holds some other trick
/// too, and shrinking takes layers away first), so then each trait that no kind has is probed:
/// a failure with it is shrunk while keeping it, and the result is a kind only if the trait is
/// needed (no simpler variant without it fails).
async fn failure_kinds<'a>(
    client: &Clamd,
    failures: Vec<&'a Scanned>,
    deadline: Instant,
) -> (Vec<FailureKind>, Vec<&'a Scanned>) {
    let mut all: Vec<(&Scanned, BTreeSet<String>, usize)> = failures
        .into_iter()
        .map(|scanned| (scanned, scanned.object.traits(), scanned.object.to_string().len()))
        .collect();
    all.sort_by_key(|(scanned, _, len)| (*len, scanned.wire));
    let mut unexplained = all.clone();
    let mut kinds: Vec<FailureKind> = Vec::new();
    while !unexplained.is_empty() && Instant::now() < deadline {
        let (first, _, _) = unexplained.remove(0);
        let minimal = shrink(client, first.object.clone(), |_| true, SHRINK_SCANS, deadline).await;
        let traits = minimal.traits();
        let before = unexplained.len();
        unexplained.retain(|(_, failure_traits, _)| !failure_traits.is_superset(&traits));
        let explained = 1 + before - unexplained.len();
        verbose(format_args!(
            "shrunk {} to {minimal}, explaining {explained}",
            first.object
        ));
        match kinds.iter_mut().find(|kind| kind.minimal.kind() == minimal.kind()) {
            Some(kind) => kind.count += explained,
            None => kinds.push(FailureKind {
                minimal,
                example_seed: first.seed,
                example: first.object.clone(),
                count: explained,
                probe: None,
            }),
        }
    }

    let mut covered: BTreeSet<String> = kinds.iter().flat_map(|kind| kind.minimal.traits()).collect();
    let mut holders: BTreeMap<String, Vec<&Scanned>> = BTreeMap::new();
    for (scanned, traits, _) in &all {
        for name in traits {
            holders.entry(name.clone()).or_default().push(scanned);
        }
    }
    let mut probes: Vec<(String, Vec<&Scanned>)> = holders.into_iter().collect();
    for (_, holders) in &mut probes {
        // The failures with the fewest other tricks are the likeliest to fail for this one.
        holders.sort_by_cached_key(|scanned| (scanned.object.traits().len(), scanned.object.to_string().len()));
    }
    probes.sort_by_key(|(name, holders)| (!structural(name), std::cmp::Reverse(holders.len())));
    for (name, holders) in probes {
        if Instant::now() >= deadline {
            break;
        }
        if covered.contains(&name) {
            verbose(format_args!("probe «{name}» ({} objects): covered", holders.len()));
            continue;
        }
        covered.insert(name.clone());
        let has = |object: &Object| object.traits().contains(&name);
        for example in holders.iter().take(PROBE_EXAMPLES) {
            let minimal = shrink(client, example.object.clone(), has, SHRINK_SCANS, deadline).await;
            let without: Vec<Object> = minimal
                .simpler()
                .into_iter()
                .filter(|candidate| !has(candidate))
                .collect();
            if first_failing(client, without).await.is_some() || Instant::now() >= deadline {
                verbose(format_args!(
                    "probe «{name}» ({} objects): not needed in {minimal}",
                    holders.len()
                ));
                continue;
            }
            verbose(format_args!(
                "probe «{name}» ({} objects): needed in {minimal}",
                holders.len()
            ));
            covered.extend(minimal.traits());
            if !kinds.iter().any(|kind| kind.minimal.kind() == minimal.kind()) {
                kinds.push(FailureKind {
                    minimal,
                    example_seed: example.seed,
                    example: example.object.clone(),
                    count: holders.len(),
                    probe: Some(name.clone()),
                });
            }
            break;
        }
    }
    (kinds, unexplained.into_iter().map(|(scanned, _, _)| scanned).collect())
}

/// How one run was asked for.
struct Settings {
    objects: usize,
    seed: u64,
    /// Whether the seed was drawn at random (`make fuzz` without `FUZZ_SEED`).
    random: bool,
    replay: Option<u64>,
    shrink_time: Duration,
}

fn parse_seed(text: &str) -> u64 {
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("not a seed (decimal or 0x-hex): {text:?}"))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

impl Settings {
    fn from_env() -> Settings {
        let objects = env("FUZZ_OBJECTS").map(|n| n.trim().parse().expect("FUZZ_OBJECTS: a number"));
        let (seed, random) = match env("FUZZ_SEED") {
            Some(seed) => (parse_seed(&seed), false),
            // `make fuzz` without a seed: a new one each run.
            None if objects.is_some() => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock after 1970")
                    .as_nanos() as u64;
                (archive_gen::object_seed(nanos, u64::from(std::process::id())), true)
            }
            None => (SEED, false),
        };
        Settings {
            objects: objects.unwrap_or(OBJECTS),
            seed,
            random,
            replay: env("FUZZ_REPLAY").map(|seed| parse_seed(&seed)),
            shrink_time: env("FUZZ_SHRINK_SECS")
                .map(|secs| Duration::from_secs(secs.trim().parse().expect("FUZZ_SHRINK_SECS: seconds")))
                .unwrap_or(SHRINK_TIME),
        }
    }
}

/// The counts of the summary line.
#[derive(Default)]
struct Tally {
    objects: usize,
    wire: usize,
    clamd_found: usize,
    clamd_flagged: usize,
    clamd_ok: usize,
    caught: usize,
    let_through: usize,
    /// Signatures only carving finds (not covered), and how many of them avscan let through.
    needs_carving: usize,
    carving_let_through: usize,
    unscannable_though_found: usize,
    found_and_guard_flagged: usize,
    errors: usize,
}

impl Tally {
    fn add(&mut self, scanned: &Scanned) {
        self.objects += 1;
        self.wire += scanned.wire;
        let Ok(verdicts) = &scanned.result else {
            self.errors += 1;
            return;
        };
        if found_signature(&verdicts.clamd) {
            self.clamd_found += 1;
            if matches!(verdicts.avscan, Verdict::Unscannable { .. }) {
                self.unscannable_though_found += 1;
            }
            if verdicts.guard_flagged {
                self.found_and_guard_flagged += 1;
            }
        } else if verdicts.clamd == Verdict::Clean {
            self.clamd_ok += 1;
            if verdicts.avscan != Verdict::Clean {
                self.caught += 1;
            }
        } else {
            self.clamd_flagged += 1;
        }
        if scanned.object.needs_carving() {
            self.needs_carving += 1;
            self.carving_let_through += usize::from(scanned.said_clean());
        }
        if scanned.let_through() {
            self.let_through += 1;
        }
    }
}

/// The encoders must write what clamd reads: each of these holds the signature where clamd
/// finds it. Otherwise the run would measure the generator, not avscan.
async fn calibrate(client: &Clamd) {
    let objects = archive_gen::calibration();
    let count = objects.len();
    let shared = objects.clone();
    let scanned = scan_many(client, count, move |i| (None, shared[i].clone())).await;
    let wrong: Vec<String> = scanned
        .iter()
        .filter(|scanned| !matches!(&scanned.result, Ok(verdicts) if found_signature(&verdicts.clamd)))
        .map(|scanned| match &scanned.result {
            Ok(verdicts) => format!("  {}: clamd said {}", scanned.object, describe(&verdicts.clamd)),
            Err(err) => format!("  {}: {err}", scanned.object),
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "the generator's encoders write what clamd does not read:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avscan_never_passes_as_clean_what_clamd_misses() {
    let settings = Settings::from_env();
    let mut clamd = LocalClamd::configure(&clamd_config());
    clamd.start();
    let client = Clamd::new(clamd.address().parse().unwrap(), 64 * 1024, Duration::from_secs(20));
    client.wait_ready(Duration::from_secs(60)).await.unwrap();
    calibrate(&client).await;

    if let Some(seed) = settings.replay {
        let scanned = scan_many(&client, 1, move |_| (Some(seed), archive_gen::generate(seed))).await;
        let scanned = &scanned[0];
        println!("seed {seed:#x}: {} ({} bytes)", scanned.object, scanned.wire);
        if let Some(path) = env("FUZZ_DUMP") {
            std::fs::write(&path, scanned.object.bytes(&mut Builder::default())).expect("FUZZ_DUMP: writable path");
            println!("bytes written to {path}");
        }
        match &scanned.result {
            Ok(verdicts) => println!(
                "clamd: {}; avscan: {}; guard flagged: {}; only carving finds the signature: {}",
                describe(&verdicts.clamd),
                describe(&verdicts.avscan),
                verdicts.guard_flagged,
                scanned.object.needs_carving()
            ),
            Err(err) => println!("error: {err}"),
        }
        assert!(!scanned.let_through(), "avscan let the signature through as clean");
        return;
    }

    let started = Instant::now();
    let base = settings.seed;
    let scanned = scan_many(&client, settings.objects, move |i| {
        let seed = archive_gen::object_seed(base, i as u64);
        (Some(seed), archive_gen::generate(seed))
    })
    .await;
    let elapsed = started.elapsed();
    let mut tally = Tally::default();
    for one in &scanned {
        tally.add(one);
    }
    println!(
        "differential: {} objects (seed {:#x}{}, {} sessions, {:.1} MB on the wire, {:.1} s, {:.0} objects/s): \
         clamd found the signature in {}, flagged {} (limits, encryption, other heuristics), said OK to {}; \
         of those avscan caught {} and let through {} (must be 0); \
         avscan unscannable though clamd found the signature: {}; clamd found it and the guard flagged it too: {}; \
         signature where only carving finds it (not covered): {}, of those let through: {}; errors: {}",
        tally.objects,
        settings.seed,
        if settings.random { ", random" } else { "" },
        SESSIONS,
        tally.wire as f64 / 1e6,
        elapsed.as_secs_f64(),
        tally.objects as f64 / elapsed.as_secs_f64(),
        tally.clamd_found,
        tally.clamd_flagged,
        tally.clamd_ok,
        tally.caught,
        tally.let_through,
        tally.unscannable_though_found,
        tally.found_and_guard_flagged,
        tally.needs_carving,
        tally.carving_let_through,
        tally.errors,
    );

    let errors: Vec<String> = scanned
        .iter()
        .filter_map(|one| {
            let err = one.result.as_ref().err()?;
            Some(format!(
                "  seed {:#x}: {err}\n    {}",
                one.seed.unwrap_or(0),
                one.object
            ))
        })
        .collect();
    let failures: Vec<&Scanned> = scanned.iter().filter(|one| one.let_through()).collect();
    if failures.is_empty() && errors.is_empty() {
        return;
    }
    let mut report = String::new();
    if !failures.is_empty() {
        let deadline = Instant::now() + settings.shrink_time;
        let (kinds, unexplained) = failure_kinds(&client, failures.clone(), deadline).await;
        report.push_str(&format!(
            "avscan let the signature through as clean in {} objects, {} distinct kinds \
             (shrunk to minimal repros; F = MaxFileSize {MAX_FILE_SIZE}, M = the test marker, \
             notation in tests/common/archive_gen.rs):\n",
            failures.len(),
            kinds.len()
        ));
        let mut by_count: BTreeMap<(std::cmp::Reverse<usize>, String), &FailureKind> = BTreeMap::new();
        for kind in &kinds {
            by_count.insert((std::cmp::Reverse(kind.count), kind.minimal.to_string()), kind);
        }
        for (i, kind) in by_count.values().enumerate() {
            let count = match &kind.probe {
                None => format!("{} objects", kind.count),
                Some(name) => format!("{} objects have «{name}», needed here", kind.count),
            };
            report.push_str(&format!(
                "{:>3}. {count} — minimal: {}\n       shrunk from seed {}: {}\n",
                i + 1,
                kind.minimal,
                kind.example_seed.map_or("-".into(), |seed| format!("{seed:#x}")),
                kind.example,
            ));
        }
        if !unexplained.is_empty() {
            report.push_str(&format!(
                "  {} more not shrunk within {:?} (FUZZ_SHRINK_SECS), e.g.:\n",
                unexplained.len(),
                settings.shrink_time
            ));
            for one in unexplained.iter().take(10) {
                report.push_str(&format!("       seed {:#x}: {}\n", one.seed.unwrap_or(0), one.object));
            }
        }
    }
    if !errors.is_empty() {
        report.push_str(&format!(
            "{} objects got no verdict:\n{}\n",
            errors.len(),
            errors.join("\n")
        ));
    }
    panic!(
        "{} objects let through as clean, {} without a verdict (seed {:#x}; replay one with FUZZ_REPLAY=<seed>):\n{report}",
        failures.len(),
        errors.len(),
        settings.seed
    );
}

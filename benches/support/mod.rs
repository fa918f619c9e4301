//! What the benches share: finding the local stack's clamd (or saying it is not there), object
//! bodies, and the plain-INSTREAM baseline.

#![allow(dead_code)]

pub mod harness;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use avscan::clamd::{Clamd, ClamdAddress};
use avscan_actors::ports::{ObjectBody, StoreError};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// clamd's address: `CLAMD_ADDRESS`, else the local stack's (`.stack/avscan.env`), else the
/// default port on loopback.
pub fn clamd_address() -> ClamdAddress {
    let from_stack = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.stack/avscan.env"))
        .ok()
        .and_then(|env| {
            env.lines()
                .find_map(|line| line.strip_prefix("CLAMD_ADDRESS=").map(str::to_owned))
        });
    let address = std::env::var("CLAMD_ADDRESS")
        .ok()
        .or(from_stack)
        .unwrap_or_else(|| "tcp://127.0.0.1:3310".into());
    address.parse().expect("CLAMD_ADDRESS")
}

/// A client of the local clamd with `chunk_size`, or `None` (and a line saying so) when clamd
/// does not answer: the bench is skipped, never faked.
pub fn clamd(runtime: &tokio::runtime::Runtime, chunk_size: usize, bench: &str) -> Option<Clamd> {
    let address = clamd_address();
    let client = Clamd::new(address.clone(), chunk_size, Duration::from_secs(60));
    match runtime.block_on(client.ping()) {
        Ok(()) => Some(client),
        Err(err) => {
            eprintln!("{bench}: clamd at {address} is not reachable ({err}); skipped. Start it with `make stack`.");
            None
        }
    }
}

/// Pseudo-random (incompressible, signature-free) bytes.
pub fn content(seed: u64, len: usize) -> Bytes {
    Bytes::from(avscan_actors::testsuite::pseudo_random_bytes(seed, len))
}

/// `count` bodies of `size` bytes a round, every one new to clamd: clamd answers bytes it already
/// found clean from its cache (measured with a raw socket, clamd's CPU per file: 64 KiB 0.6 ms
/// cached against 2.0 ms new, 4 KiB 0.37 against 0.46), and what users upload is new. The seeds
/// start from the clock, so a second bench run against the same clamd gets new bodies too.
pub struct FreshBodies {
    pub size: usize,
    pub count: usize,
    next_seed: AtomicU64,
}

impl FreshBodies {
    pub fn new(size: usize, count: usize) -> FreshBodies {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        FreshBodies {
            size,
            count,
            next_seed: AtomicU64::new(now.as_nanos() as u64),
        }
    }

    /// The bodies of `rounds` rounds, never given before.
    pub fn take(&self, rounds: u64) -> Vec<Bytes> {
        let wanted = self.count as u64 * rounds;
        let first = self.next_seed.fetch_add(wanted, Ordering::Relaxed);
        (first..first + wanted).map(|seed| content(seed, self.size)).collect()
    }
}

/// The benches' runtime, built outside every measured loop.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `content` as an S3 body would arrive: 64 KiB network reads, no copies.
pub fn body(content: &Bytes) -> ObjectBody {
    let pieces: Vec<Result<Bytes, StoreError>> = (0..content.len())
        .step_by(64 * 1024)
        .map(|at| Ok(content.slice(at..(at + 64 * 1024).min(content.len()))))
        .collect();
    ObjectBody {
        content_length: content.len() as u64,
        chunks: Box::pin(futures::stream::iter(pieces)),
    }
}

/// The baseline: one plain clamd session (IDSESSION, as avscan's), no pipeline, no guard.
pub struct RawSession {
    stream: Box<dyn RawStream>,
    chunk_size: usize,
}

pub trait RawStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> RawStream for T {}

impl RawSession {
    pub async fn open(address: &ClamdAddress, chunk_size: usize) -> RawSession {
        let mut stream: Box<dyn RawStream> = match address {
            ClamdAddress::Tcp(host_port) => {
                let stream = tokio::net::TcpStream::connect(host_port).await.unwrap();
                // As any client of a request/reply protocol should (avscan's does).
                stream.set_nodelay(true).unwrap();
                Box::new(stream)
            }
            ClamdAddress::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await.unwrap()),
        };
        stream.write_all(b"zIDSESSION\0").await.unwrap();
        RawSession { stream, chunk_size }
    }

    /// INSTREAMs `content` (one write per chunk, frame header included) and returns clamd's
    /// reply.
    pub async fn scan(&mut self, content: &[u8]) -> String {
        let mut frame = Vec::with_capacity(self.chunk_size + 16);
        frame.extend_from_slice(b"zINSTREAM\0");
        for chunk in content.chunks(self.chunk_size) {
            frame.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            frame.extend_from_slice(chunk);
            self.stream.write_all(&frame).await.unwrap();
            frame.clear();
        }
        frame.extend_from_slice(&0u32.to_be_bytes());
        self.stream.write_all(&frame).await.unwrap();
        // One command is outstanding, so the reply is everything up to its NUL.
        let mut reply = Vec::new();
        let mut buffer = [0u8; 256];
        while reply.last() != Some(&0) {
            let read = self.stream.read(&mut buffer).await.unwrap();
            assert!(read > 0, "clamd closed the session");
            reply.extend_from_slice(&buffer[..read]);
        }
        reply.pop();
        String::from_utf8_lossy(&reply).into_owned()
    }
}

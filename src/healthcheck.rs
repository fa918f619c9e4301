//! `avscan healthcheck`: asks the operations endpoint of the `avscan run` beside it
//! (`OPS_ADDRESS`) for `/healthz` and exits 0 on a 200, 1 otherwise, with one line saying why.
//! It is the container image's `HEALTHCHECK` (the image has no curl or wget). One HTTP/1.1
//! request on a plain socket, no runtime: at most two seconds to connect and two to answer.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// How long the connection and the answer may each take: what `/healthz` costs is a lookup of
/// the process' phase, so anything slower is a process in trouble.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The most of the answer read: its status line is all that is looked at.
const MAX_HEAD: u64 = 1024;

/// `avscan healthcheck`: 0 when `/healthz` answers 200, 1 otherwise.
pub(crate) fn healthcheck(args: &avscan::cli::HealthcheckArgs) -> ExitCode {
    match probe(args.ops_address, "/healthz") {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("avscan: unhealthy: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Where to ask: a server listening on every address (`0.0.0.0`, `::`) is asked on loopback.
fn target(listening: SocketAddr) -> SocketAddr {
    match listening.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listening.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listening.port()),
        _ => listening,
    }
}

/// GETs `path` from the server listening on `listening`: `Ok` on a 200, else what went wrong.
fn probe(listening: SocketAddr, path: &str) -> Result<(), String> {
    let address = target(listening);
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT).map_err(|err| format!("{address}: {err}"))?;
    let io = |err: std::io::Error| format!("{address}{path}: {err}");
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let status = status_line(&mut stream.take(MAX_HEAD)).map_err(io)?;
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("{address}{path} answered {status:?}")),
    }
}

/// The first line of the answer, read until its end (or until `reader` ends: a server that
/// closed early gives what it sent).
fn status_line(reader: &mut impl Read) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 256];
    while !head.contains(&b'\n') {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = head.split(|&byte| byte == b'\n').next().unwrap_or_default();
    Ok(String::from_utf8_lossy(line).trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server on `127.0.0.1:0` that answers one request with `answer` (after reading the
    /// request's head) and returns its address and the request it read.
    fn one_answer(answer: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 256];
            while !request.ends_with(b"\r\n\r\n") {
                let read = stream.read(&mut buffer).unwrap();
                assert!(read > 0, "the request ended early");
                request.extend_from_slice(&buffer[..read]);
            }
            stream.write_all(answer).unwrap();
            String::from_utf8(request).unwrap()
        });
        (address, server)
    }

    #[test]
    fn a_200_is_healthy_and_the_request_names_the_path() {
        let (address, server) = one_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\nalive (running)");
        assert_eq!(probe(address, "/healthz"), Ok(()));
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /healthz HTTP/1.1\r\n"), "{request:?}");
        assert!(request.contains("Connection: close\r\n"));
    }

    #[test]
    fn anything_but_a_200_is_unhealthy_and_says_what_came() {
        let (address, server) = one_answer(b"HTTP/1.1 503 Service Unavailable\r\n\r\nstopping");
        let err = probe(address, "/healthz").unwrap_err();
        assert!(err.contains("HTTP/1.1 503 Service Unavailable"), "{err}");
        server.join().unwrap();
        // A server that closes without a word.
        let (address, server) = one_answer(b"");
        assert!(probe(address, "/healthz").unwrap_err().contains("answered \"\""));
        server.join().unwrap();
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        let address = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        // The listener is dropped: the port refuses connections.
        let err = probe(address, "/healthz").unwrap_err();
        assert!(err.starts_with(&address.to_string()), "{err}");
    }

    #[test]
    fn every_address_is_asked_on_loopback_and_a_named_one_as_it_is() {
        assert_eq!(
            target("0.0.0.0:9090".parse().unwrap()),
            "127.0.0.1:9090".parse().unwrap()
        );
        assert_eq!(target("[::]:9090".parse().unwrap()), "[::1]:9090".parse().unwrap());
        assert_eq!(
            target("10.0.0.7:9091".parse().unwrap()),
            "10.0.0.7:9091".parse().unwrap()
        );
    }

    #[test]
    fn the_status_line_is_read_across_reads_and_without_its_end() {
        let mut split = (&b"HTTP/1.1 2"[..]).chain(&b"00 OK\r\nx: y\r\n\r\n"[..]);
        assert_eq!(status_line(&mut split).unwrap(), "HTTP/1.1 200 OK");
        let mut cut = &b"HTTP/1.1 20"[..];
        assert_eq!(status_line(&mut cut).unwrap(), "HTTP/1.1 20");
    }

    #[test]
    fn it_asks_where_avscan_run_listens_by_default() {
        use clap::CommandFactory;
        let cli = avscan::cli::Cli::command();
        let default_of = |subcommand: &str| {
            let command = cli.find_subcommand(subcommand).unwrap();
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_env() == Some(std::ffi::OsStr::new("OPS_ADDRESS")))
                .unwrap_or_else(|| panic!("{subcommand} reads no OPS_ADDRESS"));
            arg.get_default_values().to_vec()
        };
        assert_eq!(default_of("healthcheck"), default_of("run"));
    }
}

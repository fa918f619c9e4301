//! The processes under test and how to talk to them: `Avscan`, the real binary started with a
//! given environment (its log in a file, stopped or killed on demand); `LocalClamd`, a clamd of a
//! test's own; `run_command` for avscan's one-shot subcommands; and the operations endpoint read
//! over plain HTTP (`http_get`, `sample` for its Prometheus metrics).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The real binary, with its log in a file.
pub struct Avscan {
    child: Option<Child>,
    /// Where avscan's stderr goes, so tests can wait for and assert on log lines.
    pub log: PathBuf,
}

impl Avscan {
    /// Starts `avscan run` with only `env` in its environment.
    pub fn start(env: &HashMap<String, String>) -> Avscan {
        Self::start_in(env, &HashMap::new())
    }

    /// Starts avscan with `dotenv` written to a `.env` file in its working directory, as a user
    /// of the old worker would, and only `env` in its environment.
    pub fn start_in(env: &HashMap<String, String>, dotenv: &HashMap<String, String>) -> Avscan {
        let dir = std::env::temp_dir().join(format!("avscan-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if !dotenv.is_empty() {
            let lines: String = dotenv.iter().map(|(name, value)| format!("{name}={value}\n")).collect();
            std::fs::write(dir.join(".env"), format!("# the old worker's .env\n{lines}")).unwrap();
        }
        let log = dir.join("avscan.log");
        let child = Command::new(env!("CARGO_BIN_EXE_avscan"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            // Its own directory: no stray .env from the developer's checkout.
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Avscan {
            child: Some(child),
            log,
        }
    }

    /// The log so far (empty if nothing was written yet).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a log line containing `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log_text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "log never said {needle:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id, for sending signals.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits for avscan to exit on its own; returns the exit code.
    pub async fn wait_exit(mut self) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "avscan did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The operations endpoint's address, from the log line that announces it.
    pub async fn ops_address(&self) -> String {
        self.wait_for_log("operations endpoint listening", Duration::from_secs(30))
            .await;
        let log = self.log_text();
        let line = log
            .lines()
            .find(|line| line.contains("operations endpoint listening"))
            .unwrap();
        let at = line.find("address=").expect("address field") + "address=".len();
        line[at..].split_whitespace().next().unwrap().to_owned()
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub async fn stop(self) -> Option<i32> {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        self.wait_exit().await
    }

    /// SIGKILL (what dropping does): no drain, no release; whatever was in flight reappears
    /// after its visibility timeout.
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for Avscan {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What avscan proves of clamd at start-up (see `src/limits/`), set as the local stack's
/// clamd.conf sets it: alerts for what passes a limit and for encrypted archives, and a stream
/// limit of avscan's default MAX_FILE_SIZE. A test's own lines come first and win: clamd takes
/// the first occurrence of an option (measured: `AlertExceedsMax yes` then `AlertExceedsMax no`
/// alerts).
const AVSCAN_NEEDS: &str = "AlertExceedsMax yes\nAlertEncrypted yes\nStreamMaxLength 400M";

/// A clamd of the test's own on a unix socket, with a copy of the local stack's databases (the
/// project's signatures and the daily database `make stack` fetched: fresh, so avscan's
/// definitions check passes) in a directory of its own, the test's extra config lines and then
/// what avscan needs of clamd; started when asked (so a test can start it late) and killed on
/// drop.
pub struct LocalClamd {
    dir: PathBuf,
    /// The unix socket clamd listens on once started.
    pub socket: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
}

impl LocalClamd {
    /// Writes the config (the project's signatures, `extra_config`, then [`AVSCAN_NEEDS`], which
    /// `extra_config` overrides); does not start clamd.
    pub fn configure(extra_config: &str) -> LocalClamd {
        let dir = std::env::temp_dir().join(format!("avscan-clamd-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("clamd.sock");
        let conf = dir.join("clamd.conf");
        let stack_db = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".stack/db");
        assert!(
            stack_db.join("daily.cud").exists(),
            "no daily database in {}: run `make stack` (make test does)",
            stack_db.display()
        );
        std::fs::create_dir_all(dir.join("db")).unwrap();
        for entry in std::fs::read_dir(&stack_db).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && !path.ends_with("freshclam.dat") {
                std::fs::copy(&path, dir.join("db").join(path.file_name().unwrap())).unwrap();
            }
        }
        let clamd = LocalClamd {
            dir,
            socket,
            conf,
            child: None,
        };
        clamd.write_config(extra_config);
        clamd
    }

    /// clamd's config file (for freshclam's NotifyClamd).
    pub fn conf_path(&self) -> PathBuf {
        self.conf.clone()
    }

    /// clamd's DatabaseDirectory: a test may replace what is in it, then have clamd reload.
    pub fn database_dir(&self) -> PathBuf {
        self.dir.join("db")
    }

    /// Writes the config file; clamd reads it when it starts.
    fn write_config(&self, extra_config: &str) {
        let db = self.database_dir();
        std::fs::write(
            &self.conf,
            format!(
                "LocalSocket {}\nDatabaseDirectory {}\nForeground yes\nLogFile {}\n{extra_config}\n{AVSCAN_NEEDS}\n",
                self.socket.display(),
                db.display(),
                self.dir.join("clamd.log").display()
            ),
        )
        .unwrap();
    }

    /// Kills clamd and starts it again, on the same socket, configured with `extra_config` instead:
    /// a clamd whose configuration changed under a running avscan.
    pub fn reconfigure(&mut self, extra_config: &str) {
        self.kill();
        self.write_config(extra_config);
        self.start();
    }

    /// Waits until clamd answers PING on its socket.
    pub async fn wait_ready(&self) {
        let client = avscan::clamd::Clamd::new(self.address().parse().unwrap(), 65536, Duration::from_secs(5));
        client.wait_ready(Duration::from_secs(30)).await.unwrap();
    }

    /// The socket as avscan's CLAMD_ADDRESS (`unix://…`).
    pub fn address(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Spawns clamd in the foreground; does not wait for its socket.
    pub fn start(&mut self) {
        let binary = if std::path::Path::new("/usr/sbin/clamd").exists() {
            "/usr/sbin/clamd"
        } else {
            "clamd"
        };
        let child = Command::new(binary)
            .arg(format!("--config-file={}", self.conf.display()))
            // Its definitions' build time is printed in its time zone, read by avscan as UTC.
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clamd installed: run `make test`, which installs it");
        self.child = Some(child);
    }

    /// Kills clamd (SIGKILL, as a crash or an OOM kill would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills clamd (SIGKILL, as a crash or an OOM kill would) and starts it again at once.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }
}

impl Drop for LocalClamd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `avscan <args>` to completion with `env` only; returns its exit code and stdout.
pub async fn run_command(env: &HashMap<String, String>, args: &[&str]) -> (Option<i32>, String) {
    let (code, stdout, _) = run_command_output(env, args).await;
    (code, stdout)
}

/// Runs `avscan <args>` to completion with `env` only; returns its exit code, stdout and stderr.
pub async fn run_command_output(env: &HashMap<String, String>, args: &[&str]) -> (Option<i32>, String, String) {
    let env = env.clone();
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_avscan"))
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&env)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// A plain HTTP/1.0 GET; returns the status code and the body.
pub async fn http_get(address: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of one series in a Prometheus exposition, e.g. `avscan_bytes_scanned_total`.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
}

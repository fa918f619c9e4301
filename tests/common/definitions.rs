//! Virus definitions for the tests, made offline the way a deployment gets real ones: a daily
//! database built with sigtool (`compose/clamav/build-definitions.sh`) at the version and build
//! time a test chooses, served from a local HTTP directory (a private mirror), and fetched into a
//! clamd's DatabaseDirectory by freshclam, which tells clamd to reload.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Content only a database built [`with_new_signature`](DailyDatabase::with_new_signature) flags.
pub const NEW_SIGNATURE_CONTENT: &[u8] = b"AVSCAN-TEST-NEW-SIGNATURE-93f0c2d1";
/// The name clamd reports for it.
pub const NEW_SIGNATURE_NAME: &str = "Avscan.Test.NewSignature";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One daily database to build: the local stack's daily signatures, optionally one more.
pub struct DailyDatabase {
    version: u64,
    /// `YYYY-MM-DD HH:MM:SS` UTC; `None` is now.
    built_at: Option<String>,
    new_signature: bool,
}

impl DailyDatabase {
    /// Version `version`, built now.
    pub fn new(version: u64) -> Self {
        Self {
            version,
            built_at: None,
            new_signature: false,
        }
    }

    /// Built `age` ago.
    pub fn aged(mut self, age: Duration) -> Self {
        let at = std::time::SystemTime::now() - age;
        let text = humantime::format_rfc3339_seconds(at).to_string();
        self.built_at = Some(text.trim_end_matches('Z').replace('T', " "));
        self
    }

    /// With a signature that flags [`NEW_SIGNATURE_CONTENT`].
    pub fn with_new_signature(mut self) -> Self {
        self.new_signature = true;
        self
    }

    /// Builds `daily.cud` into `dir` (replacing one there).
    pub fn build_into(&self, dir: &Path) {
        let work = tempdir("avscan-sigs");
        let mut signatures = vec![repo().join("compose/clamav/daily/avscan-daily.ndb")];
        if self.new_signature {
            let path = work.join("new.ndb");
            let hex: String = NEW_SIGNATURE_CONTENT.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(&path, format!("{NEW_SIGNATURE_NAME}:0:*:{hex}\n")).unwrap();
            signatures.push(path);
        }
        let mut command = Command::new("bash");
        command
            .arg(repo().join("compose/clamav/build-definitions.sh"))
            .arg(dir)
            .arg(self.version.to_string());
        if let Some(at) = &self.built_at {
            command.arg(at);
        }
        let status = command.args(&signatures).status().expect("bash");
        assert!(
            status.success(),
            "build-definitions.sh failed (sigtool, faketime: make stack installs them)"
        );
        let _ = std::fs::remove_dir_all(work);
    }
}

fn tempdir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A directory served over HTTP on loopback (python's http.server), as a private mirror;
/// stopped on drop.
pub struct Mirror {
    /// What is served.
    pub dir: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    child: Child,
}

impl Mirror {
    /// Serves a new empty directory.
    pub async fn start() -> Mirror {
        let dir = tempdir("avscan-mirror");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Dropping the mirror (also when a test fails below) kills and waits for the server.
        let mirror = Mirror {
            dir,
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return mirror;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the mirror's http.server did not listen on {port}");
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs freshclam once, as the updater of a deployment does: fetches `<mirror>/daily.cud` into
/// `database_dir` when it changed, then notifies the clamd configured in `clamd_conf` (RELOAD).
/// Returns freshclam's output.
pub fn freshclam(mirror: &Mirror, database_dir: &Path, clamd_conf: &Path) -> String {
    let conf = database_dir.with_extension("freshclam.conf");
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    std::fs::write(
        &conf,
        format!(
            "DatabaseDirectory {}\nDatabaseOwner {}\nDNSDatabaseInfo no\nDatabaseMirror 127.0.0.1\n\
             DatabaseCustomURL {}/daily.cud\nNotifyClamd {}\n",
            database_dir.display(),
            user.trim(),
            mirror.url,
            clamd_conf.display()
        ),
    )
    .unwrap();
    let output = Command::new("freshclam")
        .arg(format!("--config-file={}", conf.display()))
        .arg("--update-db=custom")
        .output()
        .expect("freshclam installed: make stack installs it");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "freshclam failed:\n{text}");
    text
}

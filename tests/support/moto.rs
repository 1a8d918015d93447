//! One moto_server per test binary, on a free port on 127.0.0.1.
//!
//! The server is started by the first test that asks for it and shared by every test after that
//! (each uses its own table / queue names, see [`super::unique`]). Statics are never dropped, so
//! the child cannot be killed from a destructor; instead it runs under a tiny `sh` wrapper whose
//! stdin is a pipe from this process. When the test process ends — normally, by panic or by
//! SIGKILL — the kernel closes the pipe, the wrapper's `cat` sees end-of-file and the wrapper
//! kills moto_server. No libc, no PID files, nothing left behind.
//!
//! The binary is `$MOTO_SERVER` if set, otherwise `<repo>/.venv/bin/moto_server` as installed by
//! `scripts/venv`.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use tokio::sync::OnceCell;

/// How long moto_server may take to answer after spawning (a cold Python start is a few seconds).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts moto_server in the background and kills it when its stdin (our pipe) closes.
/// `$1` is the binary, `$2` the port.
const WRAPPER: &str = r#"
"$1" -H 127.0.0.1 -p "$2" </dev/null &
pid=$!
cat >/dev/null
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
"#;

pub struct Moto {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    /// The wrapper; holding it (never read) holds the write end of its stdin pipe open.
    _child: Mutex<Child>,
}

impl std::fmt::Debug for Moto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moto")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

static MOTO: OnceCell<Moto> = OnceCell::const_new();

/// The moto_server of this test binary, started on first use.
pub async fn moto() -> &'static Moto {
    MOTO.get_or_init(start).await
}

/// Shared AWS config pointing every client at `endpoint`, with static test credentials and
/// region us-east-1 (moto's account is 123456789012).
pub async fn aws_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(endpoint)
        .load()
        .await
}

fn binary() -> PathBuf {
    match std::env::var_os("MOTO_SERVER") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"),
    }
}

async fn start() -> Moto {
    let bin = binary();
    if !bin.is_file() {
        panic!(
            "moto_server not found at {}: run `scripts/venv` at the repository root to install \
             it (or point $MOTO_SERVER at a moto_server binary)",
            bin.display()
        );
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1 for moto_server: {e}"));
    let log_path = std::env::temp_dir().join(format!("moto-{}-{port}.log", std::process::id()));
    let log = File::create(&log_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
    let log_err = log
        .try_clone()
        .unwrap_or_else(|e| panic!("cannot share {}: {e}", log_path.display()));
    let child = Command::new("sh")
        .arg("-c")
        .arg(WRAPPER)
        .arg("moto-wrapper")
        .arg(&bin)
        .arg(port.to_string())
        // DynamoDB's conditional writes are atomic; moto's are not across its threads, which
        // would let two racing claims both win (scripts/moto-atomic/sitecustomize.py).
        .env(
            "PYTHONPATH",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/moto-atomic"),
        )
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));

    let endpoint = format!("http://127.0.0.1:{port}");
    let probe = format!("{endpoint}/moto-api/");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Ok(resp) = http.get(&probe).send().await
            && resp.status().is_success()
        {
            break;
        }
        if Instant::now() > deadline {
            let output = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!(
                "moto_server ({}) did not answer on {probe} within {STARTUP_TIMEOUT:?}; its \
                 output:\n{output}",
                bin.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its output only matters when it fails to start; moto keeps writing to the open (now
    // nameless) file, and nothing piles up in the temp directory run after run.
    let _ = std::fs::remove_file(&log_path);
    Moto {
        endpoint,
        _child: Mutex::new(child),
    }
}

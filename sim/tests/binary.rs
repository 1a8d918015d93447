//! The `findings-bridge-sim` process: scripts start it on port 0 and read where it listens.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn prints_its_address_writes_the_port_file_and_serves() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let port_file = std::env::temp_dir().join(format!("sim-port-{}-{nanos}", std::process::id()));
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_findings-bridge-sim"))
            .args(["--addr", "127.0.0.1:0", "--port-file"])
            .arg(&port_file)
            .args(["--error-rate", "0", "--search-delay-ms", "10"])
            .args([
                "--ambiguous-create-rate",
                "0.2",
                "--ambiguous-create-mode",
                "close",
            ])
            .args(["--ambiguous-late-ms", "1500"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the simulator binary starts"),
    );
    let stdout = child.0.stdout.take().expect("stdout is piped");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reader task")
    .expect("a line on stdout");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the announced address")
        .to_owned();
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    assert!(url.starts_with("http://127.0.0.1:"));
    assert_eq!(
        std::fs::read_to_string(&port_file).ok().as_deref(),
        Some(port.to_string().as_str())
    );
    let _ = std::fs::remove_file(&port_file);

    let stats = reqwest::get(format!("{url}/_sim/stats"))
        .await
        .expect("the simulator answers");
    assert_eq!(stats.status(), reqwest::StatusCode::OK);
    let faults: serde_json::Value = reqwest::get(format!("{url}/_sim/faults"))
        .await
        .expect("the simulator answers")
        .json()
        .await
        .expect("faults as JSON");
    assert_eq!(faults["search_delay_ms"], 10);
    assert_eq!(faults["ambiguous_create_rate"], 0.2);
    assert_eq!(faults["ambiguous_create_mode"], "close");
    assert_eq!(faults["ambiguous_late_ms"], 1500);
    let denied = reqwest::get(format!("{url}/rest/api/3/issue/SEC-1"))
        .await
        .expect("answers");
    assert_eq!(denied.status(), reqwest::StatusCode::UNAUTHORIZED);
}

#[test]
fn rejects_impossible_fault_settings() {
    for bad in [
        ["--error-rate", "3"],
        ["--ambiguous-create-rate", "1.5"],
        ["--ambiguous-create-mode", "reset"],
    ] {
        let status = Command::new(env!("CARGO_BIN_EXE_findings-bridge-sim"))
            .args(["--addr", "127.0.0.1:0"])
            .args(bad)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the binary runs");
        assert!(!status.success(), "{bad:?}");
    }
}

#[tokio::test]
async fn refused_credentials_and_gone_targets_can_be_set_on_the_command_line() {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_findings-bridge-sim"))
            .args(["--addr", "127.0.0.1:0"])
            .args(["--refuse-jira-credentials-ms", "600000"])
            .args(["--refuse-servicenow-credentials-ms", "1"])
            .args(["--gone-project", "PAY", "--gone-project", "OPS"])
            .args(["--gone-table", "sn_si_incident"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the simulator binary starts"),
    );
    let stdout = child.0.stdout.take().expect("stdout is piped");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reader task")
    .expect("a line on stdout");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the announced address")
        .to_owned();
    let faults: serde_json::Value = reqwest::get(format!("{url}/_sim/faults"))
        .await
        .expect("the simulator answers")
        .json()
        .await
        .expect("faults as JSON");
    assert_eq!(
        faults["refuse_credentials_ms"],
        serde_json::json!({"jira": 600000, "servicenow": 1})
    );
    assert_eq!(faults["gone_projects"], serde_json::json!(["PAY", "OPS"]));
    assert_eq!(faults["gone_tables"], serde_json::json!(["sn_si_incident"]));
    let refused = reqwest::Client::new()
        .get(format!("{url}/rest/api/3/myself"))
        .basic_auth("sim@example.com", Some("sim-token"))
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
}

//! Shared helpers for the simulator's HTTP tests: start a simulator on a free port and speak to
//! it like the bridge would.
#![allow(dead_code)]

use findings_bridge_sim::{SimConfig, SimHandle, Simulator};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::Value;

pub const EMAIL: &str = "sim@example.com";
pub const TOKEN: &str = "sim-token";
pub const PAT: &str = "sim-pat";
pub const SN_USER: &str = "sim";
pub const SN_PASSWORD: &str = "sim-password";

pub async fn start(cfg: SimConfig) -> SimHandle {
    Simulator::start(cfg, "127.0.0.1:0")
        .await
        .expect("the simulator binds a free local port")
}

pub fn client() -> Client {
    Client::new()
}

/// Percent-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

/// Sends and reads the body as JSON (`Null` when empty).
pub async fn send(req: RequestBuilder) -> Answer {
    let resp = req.send().await.expect("the simulator answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("the body can be read");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// A Jira Cloud client with the simulator's default credentials.
pub fn jira3(c: &Client, sim: &SimHandle, method: reqwest::Method, path: &str) -> RequestBuilder {
    c.request(method, format!("{}/rest/api/3{path}", sim.base_url))
        .basic_auth(EMAIL, Some(TOKEN))
}

/// A Jira Data Center client authenticating with the personal access token.
pub fn jira2(c: &Client, sim: &SimHandle, method: reqwest::Method, path: &str) -> RequestBuilder {
    c.request(method, format!("{}/rest/api/2{path}", sim.base_url))
        .bearer_auth(PAT)
}

pub fn adf(text: &str) -> Value {
    serde_json::json!({"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": text}]}
    ]})
}

/// Creates a v3 issue in project SEC and returns its key.
pub async fn create_issue(c: &Client, sim: &SimHandle, summary: &str, labels: &[&str]) -> String {
    let a = send(jira3(c, sim, reqwest::Method::POST, "/issue").json(
        &serde_json::json!({"fields": {
            "project": {"key": "SEC"},
            "issuetype": {"name": "Bug"},
            "summary": summary,
            "description": adf("details"),
            "priority": {"name": "High"},
            "labels": labels,
        }}),
    ))
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    a.body["key"].as_str().expect("a key").to_owned()
}

pub fn servicenow(
    c: &Client,
    sim: &SimHandle,
    method: reqwest::Method,
    path: &str,
) -> RequestBuilder {
    c.request(method, format!("{}/api/now/table{path}", sim.base_url))
        .basic_auth(SN_USER, Some(SN_PASSWORD))
}

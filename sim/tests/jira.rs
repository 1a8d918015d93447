//! Jira Cloud v3 and Data Center v2 as the bridge meets them: validation, workflow, comments,
//! eventually consistent search and both paging styles.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::*;
use findings_bridge_sim::SimConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn status_of(
    c: &reqwest::Client,
    sim: &findings_bridge_sim::SimHandle,
    key: &str,
) -> (String, String) {
    let a = send(jira3(
        c,
        sim,
        Method::GET,
        &format!("/issue/{key}?fields=status"),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK);
    (
        a.body["fields"]["status"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        a.body["fields"]["status"]["statusCategory"]["key"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

async fn transition_id(
    c: &reqwest::Client,
    sim: &findings_bridge_sim::SimHandle,
    key: &str,
    to_category: &str,
    name: &str,
) -> String {
    let a = send(jira3(
        c,
        sim,
        Method::GET,
        &format!("/issue/{key}/transitions"),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let list = a.body["transitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    list.iter()
        .find(|t| t["to"]["statusCategory"]["key"] == to_category && t["name"] == name)
        .and_then(|t| t["id"].as_str())
        .unwrap_or_else(|| panic!("no transition {name} to {to_category} in {list:?}"))
        .to_owned()
}

#[tokio::test]
async fn workflow_to_do_in_progress_done_and_reopen() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let key = create_issue(&c, &sim, "S3 bucket is public", &["findings-bridge"]).await;
    assert_eq!(key, "SEC-1");
    assert_eq!(
        status_of(&c, &sim, &key).await,
        ("To Do".into(), "new".into())
    );

    let start_id = transition_id(&c, &sim, &key, "indeterminate", "Start Progress").await;
    let a = send(
        jira3(&c, &sim, Method::POST, &format!("/issue/{key}/transitions"))
            .json(&json!({"transition": {"id": start_id}})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(
        status_of(&c, &sim, &key).await,
        ("In Progress".into(), "indeterminate".into())
    );

    let done_id = transition_id(&c, &sim, &key, "done", "Done").await;
    let a = send(
        jira3(&c, &sim, Method::POST, &format!("/issue/{key}/transitions"))
            .json(&json!({"transition": {"id": done_id}})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let issue = send(jira3(&c, &sim, Method::GET, &format!("/issue/{key}")))
        .await
        .body;
    assert_eq!(issue["fields"]["status"]["name"], "Done");
    assert_eq!(issue["fields"]["resolution"]["name"], "Done");

    // From Done only Reopen is offered; a stale transition id is refused like Jira does.
    let a = send(
        jira3(&c, &sim, Method::POST, &format!("/issue/{key}/transitions"))
            .json(&json!({"transition": {"id": start_id}})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.body["errorMessages"][0]
            .as_str()
            .unwrap_or_default()
            .contains("not valid")
    );

    let reopen = transition_id(&c, &sim, &key, "new", "Reopen").await;
    let a = send(
        jira3(&c, &sim, Method::POST, &format!("/issue/{key}/transitions"))
            .json(&json!({"transition": {"id": reopen}})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(
        status_of(&c, &sim, &key).await,
        ("To Do".into(), "new".into())
    );

    let history: Vec<String> = sim
        .state
        .jira_issue(&key)
        .map(|i| i.status_history.iter().map(|h| h.to.clone()).collect())
        .unwrap_or_default();
    assert_eq!(history, ["In Progress", "Done", "To Do"]);
}

#[tokio::test]
async fn a_human_transition_is_visible_through_the_api_and_bumps_updated() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let key = create_issue(&c, &sim, "Root MFA disabled", &["findings-bridge"]).await;
    let before = sim.state.jira_issue(&key).map(|i| i.updated);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let a = send(
        c.post(format!("{}/_sim/jira/{key}/transition", sim.base_url))
            .json(&json!({"to": "Won't Do"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        status_of(&c, &sim, &key).await,
        ("Won't Do".into(), "done".into())
    );
    assert!(sim.state.jira_issue(&key).map(|i| i.updated) > before);
    assert_eq!(
        sim.state
            .jira_issue(&key)
            .map(|i| i.status_history[0].by.clone())
            .as_deref(),
        Some("human")
    );

    let a = send(
        c.post(format!("{}/_sim/jira/{key}/transition", sim.base_url))
            .json(&json!({"to": "Nonsense"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = send(
        c.post(format!("{}/_sim/jira/NOPE-9/transition", sim.base_url))
            .json(&json!({"to": "Done"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(sim.state.transition_issue(&key, "In Progress").is_ok());
}

#[tokio::test]
async fn create_rejects_what_jira_rejects_with_field_errors() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let good = json!({
        "project": {"key": "SEC"}, "issuetype": {"name": "Bug"}, "summary": "ok",
        "description": adf("text"), "priority": {"name": "Medium"}, "labels": ["a", "b"],
        "customfield_10042": "111122223333", "components": [{"name": "Security"}],
    });
    let cases: Vec<(&str, Value, &str)> = vec![
        ("priority", json!({"name": "Urgent"}), "priority"),
        ("summary", json!("two\nlines"), "summary"),
        ("summary", json!("x".repeat(256)), "summary"),
        ("summary", json!(""), "summary"),
        ("labels", json!(["has space"]), "labels"),
        ("description", json!("plain text is not ADF"), "description"),
        (
            "description",
            json!({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": ""}]}]}),
            "description",
        ),
        ("project", json!({"key": ""}), "project"),
        ("issuetype", json!({}), "issuetype"),
        ("reporterr", json!("typo"), "reporterr"),
    ];
    for (field, value, error_key) in cases {
        let mut fields = good.clone();
        fields[field] = value.clone();
        let a =
            send(jira3(&c, &sim, Method::POST, "/issue").json(&json!({"fields": fields}))).await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{field}={value} was accepted"
        );
        assert_eq!(a.body["errorMessages"], json!([]));
        assert!(a.body["errors"][error_key].is_string(), "{}", a.body);
    }
    let mut no_summary = good.clone();
    no_summary.as_object_mut().map(|o| o.remove("summary"));
    let a =
        send(jira3(&c, &sim, Method::POST, "/issue").json(&json!({"fields": no_summary}))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["errors"]["summary"].is_string());
    let a = send(
        jira3(&c, &sim, Method::POST, "/issue")
            .body("{not json")
            .header("content-type", "application/json"),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        sim.state.jira_issues().is_empty(),
        "nothing invalid may be stored"
    );

    let a = send(jira3(&c, &sim, Method::POST, "/issue").json(&json!({"fields": good}))).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(
        a.body["self"],
        format!(
            "{}/rest/api/3/issue/{}",
            sim.base_url,
            a.body["id"].as_str().unwrap_or_default()
        )
    );
    let stored = sim.state.jira_issue("SEC-1").expect("stored");
    assert_eq!(stored.fields["customfield_10042"], "111122223333");
    assert_eq!(stored.priority.as_deref(), Some("Medium"));
}

#[tokio::test]
async fn v2_takes_plain_text_and_a_personal_access_token() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let fields = |description: Value| json!({"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "s", "description": description}});
    let a = send(jira2(&c, &sim, Method::POST, "/issue").json(&fields(adf("adf on v2")))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a =
        send(jira2(&c, &sim, Method::POST, "/issue").json(&fields(json!("h1. Finding\n*bold*"))))
            .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.body["key"], "OPS-1");
    let issue = send(jira2(&c, &sim, Method::GET, "/issue/OPS-1"))
        .await
        .body;
    assert_eq!(issue["fields"]["description"], "h1. Finding\n*bold*");
    // The same issue read through Cloud v3 comes back as ADF.
    let issue = send(jira3(&c, &sim, Method::GET, "/issue/OPS-1"))
        .await
        .body;
    assert_eq!(issue["fields"]["description"]["type"], "doc");

    let a = send(
        jira2(&c, &sim, Method::POST, "/issue/OPS-1/comment")
            .json(&json!({"body": "closing: finding resolved"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = send(
        jira2(&c, &sim, Method::POST, "/issue/OPS-1/comment")
            .json(&json!({"body": adf("wrong shape")})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn authentication_failures_are_401() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let url = format!("{}/rest/api/3/issue/SEC-1", sim.base_url);
    let url2 = format!("{}/rest/api/2/issue/SEC-1", sim.base_url);
    for req in [
        c.get(&url),
        c.get(&url).basic_auth(EMAIL, Some("wrong")),
        c.get(&url).basic_auth("other@example.com", Some(TOKEN)),
        c.get(&url).bearer_auth(PAT), // Cloud does not take PATs
        c.get(&url2).bearer_auth("not-the-pat"),
        c.post(format!("{}/rest/api/3/search/jql", sim.base_url))
            .json(&json!({"jql": ""})),
    ] {
        let a = send(req).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(a.body["errorMessages"].is_array());
    }
    // Authenticated, the same URLs reach the issue lookup.
    assert_eq!(
        send(c.get(&url).basic_auth(EMAIL, Some(TOKEN)))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(c.get(&url2).bearer_auth(PAT)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(c.get(&url2).basic_auth(EMAIL, Some(TOKEN)))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn new_issues_are_unsearchable_for_the_search_delay() {
    // An hour: "not yet" cannot turn into "already" however slow this machine is.
    let sim = start(SimConfig {
        jira_search_delay: Duration::from_secs(3600),
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let key = create_issue(&c, &sim, "fresh", &["fb-0123456789abcdef0123456789abcdef"]).await;
    let search = || {
        send(jira3(&c, &sim, Method::POST, "/search/jql").json(&json!({"jql": "labels = \"fb-0123456789abcdef0123456789abcdef\"", "fields": ["summary"]})))
    };
    let a = search().await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["issues"], json!([]), "search must lag behind create");
    // Direct reads are consistent immediately.
    assert_eq!(
        send(jira3(&c, &sim, Method::GET, &format!("/issue/{key}")))
            .await
            .status,
        StatusCode::OK
    );
    // The index catching up: no lag any more, so the issue is found.
    assert!(
        sim.state
            .set_faults(findings_bridge_sim::Faults::none())
            .is_ok()
    );
    let a = search().await;
    assert_eq!(a.body["issues"][0]["key"], key.as_str());
    assert_eq!(a.body["isLast"], true);
}

#[tokio::test]
async fn v3_search_pages_by_token_in_updated_order() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let mut keys = Vec::new();
    for i in 0..7 {
        keys.push(
            create_issue(
                &c,
                &sim,
                &format!("finding {i}"),
                &["findings-bridge", "security-hub"],
            )
            .await,
        );
    }
    create_issue(&c, &sim, "not ours", &["other"]).await;
    let old = create_issue(&c, &sim, "old", &["findings-bridge"]).await;
    // Give the seven issues distinct update times in reverse creation order, and push one out of
    // the watermark window.
    for (i, key) in keys.iter().enumerate() {
        let minute = u32::try_from(59 - i).unwrap_or(0);
        assert!(
            sim.state
                .set_jira_updated(
                    key,
                    Utc.with_ymd_and_hms(2026, 3, 1, 10, minute, 0).unwrap()
                )
                .is_ok()
        );
    }
    assert!(
        sim.state
            .set_jira_updated(&old, Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap())
            .is_ok()
    );

    let jql =
        r#"labels = "findings-bridge" AND updated >= "2026-03-01 10:00" ORDER BY updated ASC"#;
    let mut token: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let mut body = json!({"jql": jql, "fields": ["summary", "updated", "labels", "status"], "maxResults": 3});
        if let Some(t) = &token {
            body["nextPageToken"] = json!(t);
        }
        let a = send(jira3(&c, &sim, Method::POST, "/search/jql").json(&body)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(
            a.body.get("total").is_none(),
            "Cloud's search/jql has no total"
        );
        pages += 1;
        for issue in a.body["issues"].as_array().cloned().unwrap_or_default() {
            assert!(issue["fields"]["status"]["statusCategory"]["key"].is_string());
            seen.push(issue["key"].as_str().unwrap_or_default().to_owned());
        }
        if a.body["isLast"] == true {
            assert!(a.body.get("nextPageToken").is_none());
            break;
        }
        token = a.body["nextPageToken"].as_str().map(str::to_owned);
        assert!(token.is_some());
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = keys.iter().rev().cloned().collect();
    assert_eq!(
        seen, expected,
        "oldest update first, no duplicates, nothing outside the window"
    );

    // A token is only valid for the query that produced it.
    let a = send(
        jira3(&c, &sim, Method::POST, "/search/jql").json(&json!({"jql": jql, "maxResults": 3})),
    )
    .await;
    let t = a.body["nextPageToken"].clone();
    assert_eq!(
        a.body["issues"][0],
        json!({"id": a.body["issues"][0]["id"]}),
        "without fields only ids come back"
    );
    let a = send(
        jira3(&c, &sim, Method::POST, "/search/jql")
            .json(&json!({"jql": "labels = \"other\"", "nextPageToken": t})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    // The GET form answers the same.
    let a = send(jira3(
        &c,
        &sim,
        Method::GET,
        &format!("/search/jql?jql={}&fields=summary&maxResults=10", enc(jql)),
    ))
    .await;
    assert_eq!(a.body["issues"].as_array().map(Vec::len), Some(7));
}

#[tokio::test]
async fn v2_search_pages_by_start_at_with_total() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    for i in 0..7 {
        create_issue(&c, &sim, &format!("finding {i}"), &["findings-bridge"]).await;
    }
    let jql =
        r#"labels = "findings-bridge" AND updated >= "2020-01-01 00:00" ORDER BY updated ASC"#;
    let mut keys = HashSet::new();
    for (start_at, expect) in [(0, 3), (3, 3), (6, 1)] {
        let a = send(jira2(&c, &sim, Method::POST, "/search").json(
            &json!({"jql": jql, "startAt": start_at, "maxResults": 3, "fields": ["summary"]}),
        ))
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.body["total"], 7);
        assert_eq!(a.body["startAt"], start_at);
        let issues = a.body["issues"].as_array().cloned().unwrap_or_default();
        assert_eq!(issues.len(), expect);
        keys.extend(issues.iter().map(|i| i["key"].to_string()));
    }
    assert_eq!(keys.len(), 7);
    let a = send(jira2(
        &c,
        &sim,
        Method::GET,
        &format!("/search?jql={}&startAt=6&maxResults=3", enc(jql)),
    ))
    .await;
    assert_eq!(a.body["issues"].as_array().map(Vec::len), Some(1));
    assert_eq!(a.body["total"], 7);
}

#[tokio::test]
async fn removed_search_unknown_jql_and_escaped_quotes() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let a = send(jira3(&c, &sim, Method::POST, "/search").json(&json!({"jql": ""}))).await;
    assert_eq!(a.status, StatusCode::GONE);
    let a = send(jira3(&c, &sim, Method::GET, "/search?jql=")).await;
    assert_eq!(a.status, StatusCode::GONE);

    for bad in [
        r#"assignee = "me""#,
        r#"labels = "a" OR labels = "b""#,
        r#"labels = "open"#,
    ] {
        let a = send(jira3(&c, &sim, Method::POST, "/search/jql").json(&json!({"jql": bad}))).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(a.body["errorMessages"][0].is_string());
    }

    let quoted = create_issue(&c, &sim, "quoted", &[r#"say"hi\"#]).await;
    create_issue(&c, &sim, "plain", &["say"]).await;
    let a = send(
        jira3(&c, &sim, Method::POST, "/search/jql")
            .json(&json!({"jql": r#"labels = "say\"hi\\""#, "fields": ["labels"]})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let keys: Vec<&str> = a.body["issues"]
        .as_array()
        .map(|v| v.iter().filter_map(|i| i["key"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(keys, [quoted.as_str()]);
    let a = send(jira3(&c, &sim, Method::POST, "/search/jql").json(
        &json!({"jql": "labels in (\"say\", \"nothing\") AND key = SEC-2", "fields": ["labels"]}),
    ))
    .await;
    assert_eq!(a.body["issues"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn edit_and_comment_update_the_issue() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let key = create_issue(&c, &sim, "before", &["findings-bridge"]).await;
    let a = send(
        jira3(&c, &sim, Method::PUT, &format!("/issue/{key}")).json(&json!({
            "fields": {"summary": "after", "priority": {"name": "Highest"}},
            "update": {"labels": [{"add": "severity-critical"}, {"remove": "findings-bridge"}]},
        })),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let issue = send(jira3(&c, &sim, Method::GET, &format!("/issue/{key}")))
        .await
        .body;
    assert_eq!(issue["fields"]["summary"], "after");
    assert_eq!(issue["fields"]["priority"]["name"], "Highest");
    assert_eq!(issue["fields"]["labels"], json!(["severity-critical"]));

    let a = send(
        jira3(&c, &sim, Method::PUT, &format!("/issue/{key}"))
            .json(&json!({"fields": {"priority": {"name": "P1"}}})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = send(
        jira3(&c, &sim, Method::PUT, "/issue/SEC-99").json(&json!({"fields": {"summary": "x"}})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    let a = send(
        jira3(&c, &sim, Method::POST, &format!("/issue/{key}/comment"))
            .json(&json!({"body": adf("Severity raised to CRITICAL")})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert!(a.body["id"].is_string());
    let a = send(
        jira3(&c, &sim, Method::POST, &format!("/issue/{key}/comment"))
            .json(&json!({"body": "v3 needs ADF"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let issue = send(jira3(&c, &sim, Method::GET, &format!("/issue/{key}")))
        .await
        .body;
    assert_eq!(issue["fields"]["comment"]["total"], 1);
    assert_eq!(
        issue["fields"]["comment"]["comments"][0]["body"],
        adf("Severity raised to CRITICAL")
    );
}

#[tokio::test]
async fn comments_read_back_newest_first_in_each_api_shape() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let key = create_issue(&c, &sim, "commented", &["findings-bridge"]).await;
    for text in ["first", "second", "third"] {
        let a = send(
            jira3(&c, &sim, Method::POST, &format!("/issue/{key}/comment"))
                .json(&json!({"body": adf(text)})),
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    }

    let a = send(jira3(
        &c,
        &sim,
        Method::GET,
        &format!("/issue/{key}/comment?orderBy=-created&maxResults=2"),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["total"], 3);
    assert_eq!(a.body["startAt"], 0);
    assert_eq!(a.body["maxResults"], 2);
    let comments = a.body["comments"].as_array().cloned().unwrap_or_default();
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[0]["body"], adf("third"), "v3 bodies are ADF");
    assert_eq!(comments[1]["body"], adf("second"));
    assert!(comments[0]["id"].is_string() && comments[0]["created"].is_string());

    // Data Center: the same comments as text, oldest first by default, paged by startAt.
    let a = send(jira2(
        &c,
        &sim,
        Method::GET,
        &format!("/issue/{key}/comment?startAt=2"),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["total"], 3);
    assert_eq!(a.body["comments"][0]["body"], "third");
    assert_eq!(a.body["comments"].as_array().map(Vec::len), Some(1));

    let a = send(jira3(&c, &sim, Method::GET, "/issue/SEC-99/comment")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = send(jira3(
        &c,
        &sim,
        Method::GET,
        &format!("/issue/{key}/comment?orderBy=author"),
    ))
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn operator_view_counts_markers_done_and_comments() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let marker = "fb-0123456789abcdef0123456789abcdef";
    let open = create_issue(&c, &sim, "open", &[marker, "findings-bridge"]).await;
    let closed = create_issue(&c, &sim, "closed", &["findings-bridge", "fb-closed"]).await;
    let a = send(
        jira3(&c, &sim, Method::POST, &format!("/issue/{open}/comment"))
            .json(&json!({"body": adf("note")})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = send(
        c.post(format!("{}/_sim/jira/{closed}/transition", sim.base_url))
            .json(&json!({"to": "Done"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);

    let full = send(c.get(format!("{}/_sim/tickets", sim.base_url)))
        .await
        .body;
    assert_eq!(full["jira"][0]["marker"], marker);
    assert_eq!(full["jira"][0]["done"], false);
    assert_eq!(full["jira"][0]["comment_count"], 1);
    assert_eq!(
        full["jira"][0]["summary"], "open",
        "the full ticket is still there"
    );
    assert_eq!(full["jira"][1]["marker"], "fb-closed");
    assert_eq!(full["jira"][1]["done"], true);

    let a = send(c.get(format!("{}/_sim/tickets?view=summary", sim.base_url))).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body["tickets"][0],
        json!({
            "system": "jira", "id": open, "number": open, "marker": marker, "status": "To Do",
            "done": false, "comment_count": 1,
            "created": a.body["tickets"][0]["created"].clone(),
        })
    );
    assert_eq!(a.body["tickets"][1]["done"], true);
    let a = send(c.get(format!("{}/_sim/tickets?view=pretty", sim.base_url))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn issue_properties_set_on_create_are_read_back_and_deleted_issues_are_gone() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let create = |properties: Value| {
        jira3(&c, &sim, Method::POST, "/issue").json(&json!({
            "fields": {"project": {"key": "SEC"}, "issuetype": {"name": "Bug"}, "summary": "s"},
            "properties": properties,
        }))
    };
    let a = send(create(
        json!([{"key": "findings-bridge", "value": {"v": 1, "team": "appsec"}}]),
    ))
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let key = a.body["key"].as_str().unwrap_or_default().to_owned();
    for get in [
        jira3(
            &c,
            &sim,
            Method::GET,
            &format!("/issue/{key}/properties/findings-bridge"),
        ),
        jira2(
            &c,
            &sim,
            Method::GET,
            &format!("/issue/{key}/properties/findings-bridge"),
        ),
    ] {
        let a = send(get).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(
            a.body,
            json!({"key": "findings-bridge", "value": {"v": 1, "team": "appsec"}})
        );
    }
    let other = send(jira3(
        &c,
        &sim,
        Method::GET,
        &format!("/issue/{key}/properties/other"),
    ))
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    // Jira refuses a property whose value is not an object.
    let bad = send(create(json!([{"key": "findings-bridge", "value": "text"}]))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);

    sim.state.delete_jira_issue(&key).expect("the issue exists");
    let gone = send(jira3(&c, &sim, Method::GET, &format!("/issue/{key}"))).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let gone = send(jira3(
        &c,
        &sim,
        Method::GET,
        &format!("/issue/{key}/properties/findings-bridge"),
    ))
    .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let found = send(
        jira3(&c, &sim, Method::POST, "/search/jql")
            .json(&json!({"jql": "project = SEC", "fields": ["summary"]})),
    )
    .await;
    assert_eq!(
        found.body["issues"],
        json!([]),
        "deleted issues are not searched"
    );
}

#[tokio::test]
async fn the_changelog_names_who_moved_the_issue_in_both_shapes_and_done_sets_a_resolution() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let key = create_issue(&c, &sim, "Root MFA disabled", &["findings-bridge"]).await;
    // The API user starts work (with a transition), a person accepts it with a resolution.
    let start_work = transition_id(&c, &sim, &key, "indeterminate", "Start Progress").await;
    let a = send(
        jira3(&c, &sim, Method::POST, &format!("/issue/{key}/transitions"))
            .json(&json!({"transition": {"id": start_work}})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    sim.state
        .transition_issue_as(&key, "Won't Do", "Ada O'Brien", Some("Won't Fix"))
        .unwrap();

    let a = send(jira3(
        &c,
        &sim,
        Method::GET,
        &format!("/issue/{key}/changelog?startAt=1&maxResults=1"),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        (&a.body["startAt"], &a.body["total"], &a.body["isLast"]),
        (&json!(1), &json!(2), &json!(true))
    );
    let newest = &a.body["values"][0];
    assert_eq!(newest["author"]["displayName"], "Ada O'Brien");
    assert_eq!(newest["items"][0]["field"], "status");
    assert_eq!(newest["items"][0]["fromString"], "In Progress");
    assert_eq!(newest["items"][0]["toString"], "Won't Do");
    let first = send(jira3(
        &c,
        &sim,
        Method::GET,
        &format!("/issue/{key}/changelog"),
    ))
    .await;
    assert_eq!(first.body["isLast"], true);
    assert_eq!(
        first.body["values"][0]["author"]["displayName"],
        "findings-bridge (simulated)"
    );

    let dc = send(jira2(
        &c,
        &sim,
        Method::GET,
        &format!("/issue/{key}?expand=changelog&fields=status,resolution"),
    ))
    .await;
    assert_eq!(dc.status, StatusCode::OK);
    let histories = dc.body["changelog"]["histories"]
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(histories.len(), 2);
    assert_eq!(histories[1]["author"]["displayName"], "Ada O'Brien");
    assert_eq!(dc.body["fields"]["resolution"]["name"], "Won't Fix");

    // Reopened: no resolution; done by the default human: the status's name.
    sim.state.transition_issue(&key, "To Do").unwrap();
    let open = send(jira3(
        &c,
        &sim,
        Method::GET,
        &format!("/issue/{key}?fields=resolution"),
    ))
    .await;
    assert_eq!(open.body["fields"]["resolution"], Value::Null);
    let done = sim.state.transition_issue(&key, "Done").unwrap();
    assert_eq!(done.resolution.as_deref(), Some("Done"));
    assert_eq!(
        done.status_history.last().map(|c| c.author.as_str()),
        Some("Jane Doe")
    );
}

//! The set-up a preflight reads: Jira createmeta in both shapes and pages, permissions and
//! priorities; ServiceNow's table hierarchy, dictionary and groups through the Table API; and the
//! set-up changed by a test, which creates then respect.

mod common;

use std::collections::BTreeMap;

use common::*;
use findings_bridge_sim::{Faults, Setup, SimConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Every entry of a createmeta list, following `startAt` until Jira says it is done.
async fn all_pages(
    c: &reqwest::Client,
    sim: &findings_bridge_sim::SimHandle,
    v3: bool,
    path: &str,
    key: &str,
) -> (Vec<Value>, usize) {
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{path}{sep}startAt={}&maxResults=50", all.len());
        let a = if v3 {
            send(jira3(c, sim, Method::GET, &url)).await
        } else {
            send(jira2(c, sim, Method::GET, &url)).await
        };
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        pages += 1;
        let list = a.body[key].as_array().cloned().unwrap_or_default();
        let total = a.body["total"].as_u64().expect("a total") as usize;
        if !v3 {
            assert_eq!(
                a.body["isLast"].as_bool(),
                Some(all.len() + list.len() >= total),
                "{}",
                a.body
            );
        }
        let empty = list.is_empty();
        all.extend(list);
        if empty || all.len() >= total {
            return (all, pages);
        }
    }
}

#[tokio::test]
async fn createmeta_lists_issue_types_and_paged_fields_in_both_shapes() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let (types, _) = all_pages(
        &c,
        &sim,
        true,
        "/issue/createmeta/PAY/issuetypes",
        "issueTypes",
    )
    .await;
    let names: Vec<&str> = types.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["Bug", "Task", "Story", "Epic"]);
    let (dc_types, _) = all_pages(
        &c,
        &sim,
        false,
        "/issue/createmeta/PAY/issuetypes",
        "values",
    )
    .await;
    assert_eq!(dc_types.len(), 4);

    let (fields, pages) = all_pages(
        &c,
        &sim,
        true,
        "/issue/createmeta/PAY/issuetypes/10001",
        "fields",
    )
    .await;
    assert!(pages >= 3, "more than two pages of fields: {pages}");
    let (dc_fields, _) = all_pages(
        &c,
        &sim,
        false,
        "/issue/createmeta/PAY/issuetypes/10001",
        "values",
    )
    .await;
    let ids = |list: &[Value]| -> Vec<String> {
        list.iter()
            .map(|f| f["fieldId"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&fields),
        ids(&dc_fields),
        "the same screen through both APIs"
    );
    let field = |id: &str| fields.iter().find(|f| f["fieldId"] == id).cloned();
    let summary = field("summary").expect("summary is on the screen");
    assert_eq!(summary["required"], true);
    assert_eq!(summary["hasDefaultValue"], false);
    let reporter = field("reporter").expect("reporter");
    assert_eq!(
        (
            reporter["required"].as_bool(),
            reporter["hasDefaultValue"].as_bool()
        ),
        (Some(true), Some(true))
    );
    let priority = field("priority").expect("priority");
    let priorities: Vec<&str> = priority["allowedValues"]
        .as_array()
        .expect("allowed values")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(priorities, ["Highest", "High", "Medium", "Low", "Lowest"]);
    assert!(field("labels").is_some() && field("customfield_10099").is_some());

    let missing = send(jira3(
        &c,
        &sim,
        Method::GET,
        "/issue/createmeta/PAY/issuetypes/99",
    ))
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad_key = send(jira3(
        &c,
        &sim,
        Method::GET,
        "/issue/createmeta/pay-1/issuetypes",
    ))
    .await;
    assert_eq!(bad_key.status, StatusCode::NOT_FOUND);
    assert_eq!(
        sim.state
            .request_count("GET /rest/api/3/issue/createmeta/{project}/issuetypes/{id}"),
        pages as u64 + 1,
        "createmeta requests are counted by route"
    );
}

#[tokio::test]
async fn the_setup_changes_screens_issue_types_and_permissions() {
    let setup = Setup {
        jira_required_fields: BTreeMap::from([(
            "PAY/Bug".to_owned(),
            vec!["customfield_10099".to_owned()],
        )]),
        jira_hidden_fields: BTreeMap::from([("PAY".to_owned(), vec!["labels".to_owned()])]),
        jira_missing_issue_types: vec!["PAY/Story".to_owned()],
        jira_missing_permissions: BTreeMap::from([(
            "OPS".to_owned(),
            vec!["CREATE_ISSUES".to_owned()],
        )]),
        ..Setup::default()
    };
    let sim = start(SimConfig {
        setup,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let (types, _) = all_pages(
        &c,
        &sim,
        true,
        "/issue/createmeta/PAY/issuetypes",
        "issueTypes",
    )
    .await;
    assert!(!types.iter().any(|t| t["name"] == "Story"));
    let (fields, _) = all_pages(
        &c,
        &sim,
        false,
        "/issue/createmeta/PAY/issuetypes/10001",
        "values",
    )
    .await;
    let custom = fields
        .iter()
        .find(|f| f["fieldId"] == "customfield_10099")
        .expect("the required field");
    assert_eq!(custom["required"], true);
    assert!(!fields.iter().any(|f| f["fieldId"] == "labels"));

    let perms = send(jira3(
        &c,
        &sim,
        Method::GET,
        "/mypermissions?projectKey=OPS&permissions=BROWSE_PROJECTS,CREATE_ISSUES",
    ))
    .await;
    assert_eq!(perms.status, StatusCode::OK);
    assert_eq!(
        perms.body["permissions"]["BROWSE_PROJECTS"]["havePermission"],
        true
    );
    assert_eq!(
        perms.body["permissions"]["CREATE_ISSUES"]["havePermission"],
        false
    );
    let (ops_types, _) = all_pages(
        &c,
        &sim,
        true,
        "/issue/createmeta/OPS/issuetypes",
        "issueTypes",
    )
    .await;
    assert!(
        ops_types.is_empty(),
        "createmeta shows nothing without CREATE_ISSUES"
    );
    let no_param = send(jira2(
        &c,
        &sim,
        Method::GET,
        "/mypermissions?projectKey=OPS",
    ))
    .await;
    assert_eq!(no_param.status, StatusCode::BAD_REQUEST);

    // A create is refused for what the screen refuses.
    let body = |project: &str, issue_type: &str| {
        json!({"fields": {"project": {"key": project}, "issuetype": {"name": issue_type},
            "summary": "s", "description": adf("d")}})
    };
    let refused = send(jira3(&c, &sim, Method::POST, "/issue").json(&body("PAY", "Bug"))).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body["errors"]["customfield_10099"].is_string(),
        "{}",
        refused.body
    );
    let story = send(jira3(&c, &sim, Method::POST, "/issue").json(&body("PAY", "Story"))).await;
    assert!(
        story.body["errors"]["issuetype"].is_string(),
        "{}",
        story.body
    );
    let ops = send(jira3(&c, &sim, Method::POST, "/issue").json(&body("OPS", "Bug"))).await;
    assert!(ops.body["errors"]["project"].is_string(), "{}", ops.body);
    assert!(sim.state.jira_issues().is_empty());

    // POST /_sim/setup replaces it whole.
    let reset = send(
        c.post(format!("{}/_sim/setup", sim.base_url))
            .json(&json!({})),
    )
    .await;
    assert_eq!(reset.status, StatusCode::OK);
    let created = send(jira3(&c, &sim, Method::POST, "/issue").json(&body("PAY", "Bug"))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let invalid = send(
        c.post(format!("{}/_sim/setup", sim.base_url))
            .json(&json!({"jira_missing_issue_types": ["PAY"]})),
    )
    .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn priorities_are_listed() {
    let sim = start(SimConfig::default()).await;
    let a = send(jira2(&client(), &sim, Method::GET, "/priority")).await;
    assert_eq!(a.status, StatusCode::OK);
    let names: Vec<&str> = a
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["Highest", "High", "Medium", "Low", "Lowest"]);
}

#[tokio::test]
async fn servicenow_describes_its_tables_and_groups_through_the_table_api() {
    let sim = start(SimConfig {
        faults: Faults {
            gone_tables: vec!["u_gone".to_owned()],
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let get = |path: String| servicenow(&c, &sim, Method::GET, &path);
    let incident = send(get(format!(
        "/sys_db_object?sysparm_query={}&sysparm_fields=sys_id,name,super_class&sysparm_limit=1",
        enc("name=incident")
    )))
    .await;
    assert_eq!(incident.status, StatusCode::OK, "{}", incident.body);
    let parent = incident.body["result"][0]["super_class"]
        .as_str()
        .expect("incident extends a table")
        .to_owned();
    let task = send(get(format!(
        "/sys_db_object?sysparm_query={}&sysparm_fields=name,super_class",
        enc(&format!("sys_id={parent}"))
    )))
    .await;
    assert_eq!(task.body["result"][0]["name"], "task");
    assert_eq!(task.body["result"][0]["super_class"], "");
    // Any table the Table API serves extends task; a gone one does not exist.
    let custom = send(get(format!(
        "/sys_db_object?sysparm_query={}",
        enc("name=u_case")
    )))
    .await;
    assert_eq!(custom.body["result"][0]["super_class"], parent.as_str());
    let gone = send(get(format!(
        "/sys_db_object?sysparm_query={}",
        enc("name=u_gone")
    )))
    .await;
    assert_eq!(gone.body["result"], json!([]));

    let columns = send(get(format!(
        "/sys_dictionary?sysparm_query={}&sysparm_fields=name,element&sysparm_limit=1000",
        enc("nameINincident,task^elementISNOTEMPTY")
    )))
    .await;
    let elements: Vec<&str> = columns.body["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["element"].as_str())
        .collect();
    for column in [
        "short_description",
        "correlation_id",
        "category",
        "u_aws_account",
    ] {
        assert!(elements.contains(&column), "{column} in {elements:?}");
    }
    assert!(
        !elements.contains(&""),
        "collection entries are filtered out"
    );

    let group = send(get(format!(
        "/sys_user_group?sysparm_query={}&sysparm_fields=sys_id,name",
        enc("name=Cloud Platform")
    )))
    .await;
    let sys_id = group.body["result"][0]["sys_id"]
        .as_str()
        .expect("the group")
        .to_owned();
    assert_eq!(sys_id.len(), 32);
    let by_id = send(get(format!(
        "/sys_user_group?sysparm_query={}",
        enc(&format!("sys_id={sys_id}"))
    )))
    .await;
    assert_eq!(by_id.body["result"][0]["name"], "Cloud Platform");
    let none = send(get(format!(
        "/sys_user_group?sysparm_query={}",
        enc("name=Nobody")
    )))
    .await;
    assert_eq!(none.body["result"], json!([]));
    assert!(
        sim.state.servicenow_records().is_empty(),
        "reads create nothing"
    );
}

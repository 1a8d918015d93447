//! Atlassian Document Format checks strict enough to catch what Jira Cloud rejects (wrong root,
//! empty text nodes, text outside a paragraph), plus the plain-text view v2 clients see.

use serde_json::{Value, json};

const BLOCK_NODES: &[&str] = &[
    "paragraph",
    "heading",
    "bulletList",
    "orderedList",
    "listItem",
    "codeBlock",
    "blockquote",
    "rule",
    "panel",
    "table",
    "tableRow",
    "tableHeader",
    "tableCell",
    "expand",
    "nestedExpand",
    "mediaSingle",
    "mediaGroup",
    "media",
];
const INLINE_NODES: &[&str] = &[
    "text",
    "hardBreak",
    "mention",
    "emoji",
    "inlineCard",
    "status",
    "date",
];
/// Nodes whose children are inline content (and the only places text may appear).
const TEXT_CONTAINERS: &[&str] = &["paragraph", "heading", "codeBlock"];
const MARKS: &[&str] = &[
    "strong",
    "em",
    "code",
    "link",
    "strike",
    "underline",
    "subsup",
    "textColor",
];

/// Checks a whole document; the error names the path of the first bad node.
pub fn validate_doc(doc: &Value) -> Result<(), String> {
    let obj = doc
        .as_object()
        .ok_or("the document must be a JSON object")?;
    if obj.get("type").and_then(Value::as_str) != Some("doc") {
        return Err("the root node must have type \"doc\"".to_owned());
    }
    if obj.get("version").and_then(Value::as_i64) != Some(1) {
        return Err("the root node must have version 1".to_owned());
    }
    let content = obj
        .get("content")
        .and_then(Value::as_array)
        .ok_or("the root node must have a content array")?;
    for (i, node) in content.iter().enumerate() {
        validate_node(node, "doc", &format!("content[{i}]"))?;
    }
    Ok(())
}

fn validate_node(node: &Value, parent: &str, path: &str) -> Result<(), String> {
    let obj = node
        .as_object()
        .ok_or_else(|| format!("{path}: a node must be an object"))?;
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{path}: a node needs a string type"))?;
    let is_inline = INLINE_NODES.contains(&ty);
    if !is_inline && !BLOCK_NODES.contains(&ty) {
        return Err(format!("{path}: unknown node type {ty:?}"));
    }
    if is_inline && !TEXT_CONTAINERS.contains(&parent) {
        return Err(format!("{path}: {ty} is not allowed inside {parent}"));
    }
    if !is_inline && TEXT_CONTAINERS.contains(&parent) {
        return Err(format!("{path}: {ty} is not allowed inside {parent}"));
    }
    if matches!(parent, "bulletList" | "orderedList") && ty != "listItem" {
        return Err(format!(
            "{path}: a list may only contain listItem, not {ty}"
        ));
    }
    if ty == "text" {
        match obj.get("text").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => {}
            _ => return Err(format!("{path}: a text node must have non-empty text")),
        }
        if let Some(marks) = obj.get("marks") {
            let marks = marks
                .as_array()
                .ok_or_else(|| format!("{path}.marks: must be an array"))?;
            for (i, mark) in marks.iter().enumerate() {
                let mty = mark.get("type").and_then(Value::as_str).unwrap_or("");
                if !MARKS.contains(&mty) {
                    return Err(format!("{path}.marks[{i}]: unknown mark {mty:?}"));
                }
                if mty == "link"
                    && mark
                        .pointer("/attrs/href")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                {
                    return Err(format!("{path}.marks[{i}]: a link needs attrs.href"));
                }
            }
        }
    }
    if let Some(content) = obj.get("content") {
        let content = content
            .as_array()
            .ok_or_else(|| format!("{path}.content: must be an array"))?;
        for (i, child) in content.iter().enumerate() {
            validate_node(child, ty, &format!("{path}.content[{i}]"))?;
        }
    }
    Ok(())
}

/// Length Jira counts against the 32,767 character limit, approximated by the visible text.
pub fn text_len(doc: &Value) -> usize {
    to_text(doc).chars().count()
}

/// Plain text of a document, one line per block: what a v2 (Data Center style) client reads.
pub fn to_text(doc: &Value) -> String {
    let mut lines = Vec::new();
    collect_blocks(doc, &mut lines);
    lines.join("\n")
}

fn collect_blocks(node: &Value, lines: &mut Vec<String>) {
    let ty = node.get("type").and_then(Value::as_str).unwrap_or("");
    let children = node
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if TEXT_CONTAINERS.contains(&ty) {
        let mut line = String::new();
        for child in children {
            match child.get("type").and_then(Value::as_str) {
                Some("text") => {
                    line.push_str(child.get("text").and_then(Value::as_str).unwrap_or(""))
                }
                Some("hardBreak") => line.push('\n'),
                _ => {}
            }
        }
        lines.push(line);
    } else {
        for child in children {
            collect_blocks(child, lines);
        }
    }
}

/// A document of one paragraph per non-empty line: how a v2 string reads through v3.
pub fn from_text(text: &str) -> Value {
    let content: Vec<Value> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| json!({"type": "paragraph", "content": [{"type": "text", "text": l}]}))
        .collect();
    json!({"type": "doc", "version": 1, "content": content})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_paragraphs_lists_links_and_code() {
        let doc = json!({"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [
                {"type": "text", "text": "see "},
                {"type": "text", "text": "console", "marks": [{"type": "link", "attrs": {"href": "https://x"}}]}
            ]},
            {"type": "bulletList", "content": [
                {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "a"}]}]}
            ]},
            {"type": "codeBlock", "content": [{"type": "text", "text": "ls"}]}
        ]});
        assert_eq!(validate_doc(&doc), Ok(()));
        assert_eq!(to_text(&doc), "see console\na\nls");
    }

    #[test]
    fn rejects_what_jira_rejects() {
        let cases = [
            json!("plain string"),
            json!({"type": "doc", "version": 2, "content": []}),
            json!({"type": "paragraph", "version": 1, "content": []}),
            json!({"type": "doc", "version": 1}),
            json!({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": ""}]}]}),
            json!({"type": "doc", "version": 1, "content": [{"type": "text", "text": "loose"}]}),
            json!({"type": "doc", "version": 1, "content": [{"type": "bulletList", "content": [{"type": "paragraph"}]}]}),
            json!({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "x", "marks": [{"type": "link"}]}]}]}),
            json!({"type": "doc", "version": 1, "content": [{"type": "markdown"}]}),
        ];
        for case in cases {
            assert!(validate_doc(&case).is_err(), "accepted {case}");
        }
    }

    #[test]
    fn plain_text_round_trips_through_adf() {
        let doc = from_text("one\n\ntwo");
        assert_eq!(validate_doc(&doc), Ok(()));
        assert_eq!(to_text(&doc), "one\ntwo");
        assert_eq!(validate_doc(&from_text("")), Ok(()));
    }
}

//! Light Markdown → Atlassian Document Format, for Jira Cloud (REST v3), whose description and
//! comment fields accept nothing else.
//!
//! The output only uses nodes and marks Jira Cloud documents as supported (`paragraph`,
//! `hardBreak`, `heading`, `bulletList`, `orderedList`, `listItem`, `codeBlock`, `text` with
//! `strong`, `code` and `link` marks) and never contains an empty text node, which Jira rejects
//! with a 400 that would dead-letter the finding.

use serde_json::{Map, Value, json};

use super::markdown::{Block, Line, Span, parse};

/// Converts the Markdown subset described in `ticket::markdown` into an ADF `doc` node.
/// Total: any input (hostile included) yields a valid document in linear time.
pub fn markdown_to_adf(md: &str) -> Value {
    let content: Vec<Value> = parse(md).into_iter().map(block).collect();
    json!({"type": "doc", "version": 1, "content": content})
}

fn block(block: Block) -> Value {
    match block {
        Block::Paragraph(lines) => paragraph(lines),
        Block::Heading { level, line } => json!({
            "type": "heading",
            "attrs": {"level": level},
            "content": inline(vec![line]),
        }),
        Block::List {
            ordered,
            start,
            items,
        } => {
            let items: Vec<Value> = items
                .into_iter()
                .map(|lines| json!({"type": "listItem", "content": [paragraph(lines)]}))
                .collect();
            let mut node = Map::new();
            node.insert(
                "type".into(),
                Value::from(if ordered { "orderedList" } else { "bulletList" }),
            );
            if ordered && start != 1 {
                node.insert("attrs".into(), json!({"order": start}));
            }
            node.insert("content".into(), Value::Array(items));
            Value::Object(node)
        }
        Block::Code { language, text } => {
            let mut node = Map::new();
            node.insert("type".into(), Value::from("codeBlock"));
            if let Some(language) = language {
                node.insert("attrs".into(), json!({"language": language}));
            }
            let content = if text.is_empty() {
                Vec::new()
            } else {
                vec![json!({"type": "text", "text": text})]
            };
            node.insert("content".into(), Value::Array(content));
            Value::Object(node)
        }
    }
}

fn paragraph(lines: Vec<Line>) -> Value {
    json!({"type": "paragraph", "content": inline(lines)})
}

/// Lines joined by `hardBreak`, each span a text node with its marks.
fn inline(lines: Vec<Line>) -> Vec<Value> {
    let mut out = Vec::new();
    for (n, line) in lines.into_iter().enumerate() {
        if n > 0 {
            out.push(json!({"type": "hardBreak"}));
        }
        out.extend(line.into_iter().filter(|s| !s.text.is_empty()).map(text));
    }
    out
}

fn text(span: Span) -> Value {
    let mut marks = Vec::new();
    if let Some(href) = span.link {
        marks.push(json!({"type": "link", "attrs": {"href": href}}));
    }
    if span.strong {
        marks.push(json!({"type": "strong"}));
    }
    if span.code {
        marks.push(json!({"type": "code"}));
    }
    let mut node = Map::new();
    node.insert("type".into(), Value::from("text"));
    node.insert("text".into(), Value::from(span.text));
    if !marks.is_empty() {
        node.insert("marks".into(), Value::Array(marks));
    }
    Value::Object(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(content: Value) -> Value {
        json!({"type": "doc", "version": 1, "content": content})
    }

    #[test]
    fn empty_input_is_an_empty_document() {
        assert_eq!(markdown_to_adf(""), doc(json!([])));
        assert_eq!(markdown_to_adf("\n\n  \n\u{0}"), doc(json!([])));
    }

    #[test]
    fn paragraphs_and_line_breaks() {
        assert_eq!(
            markdown_to_adf("first line\nsecond line\n\nnext paragraph"),
            doc(json!([
                {"type": "paragraph", "content": [
                    {"type": "text", "text": "first line"},
                    {"type": "hardBreak"},
                    {"type": "text", "text": "second line"},
                ]},
                {"type": "paragraph", "content": [{"type": "text", "text": "next paragraph"}]},
            ]))
        );
    }

    #[test]
    fn bullet_and_ordered_lists() {
        assert_eq!(
            markdown_to_adf("- one\n* two\n\n3. three\n4) four"),
            doc(json!([
                {"type": "bulletList", "content": [
                    {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "one"}]}]},
                    {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "two"}]}]},
                ]},
                {"type": "orderedList", "attrs": {"order": 3}, "content": [
                    {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "three"}]}]},
                    {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "four"}]}]},
                ]},
            ]))
        );
    }

    #[test]
    fn ordered_list_from_one_has_no_attrs_and_indented_lines_continue_items() {
        assert_eq!(
            markdown_to_adf("1. step\n   more\nafter"),
            doc(json!([
                {"type": "orderedList", "content": [
                    {"type": "listItem", "content": [{"type": "paragraph", "content": [
                        {"type": "text", "text": "step"},
                        {"type": "hardBreak"},
                        {"type": "text", "text": "more"},
                    ]}]},
                ]},
                {"type": "paragraph", "content": [{"type": "text", "text": "after"}]},
            ]))
        );
    }

    #[test]
    fn links_code_and_bold_become_marks() {
        assert_eq!(
            markdown_to_adf(
                "See [the console](https://console.aws.amazon.com/x) or `aws s3 ls`, **now**."
            ),
            doc(json!([{"type": "paragraph", "content": [
                {"type": "text", "text": "See "},
                {"type": "text", "text": "the console", "marks": [{"type": "link", "attrs": {"href": "https://console.aws.amazon.com/x"}}]},
                {"type": "text", "text": " or "},
                {"type": "text", "text": "aws s3 ls", "marks": [{"type": "code"}]},
                {"type": "text", "text": ", "},
                {"type": "text", "text": "now", "marks": [{"type": "strong"}]},
                {"type": "text", "text": "."},
            ]}]))
        );
    }

    #[test]
    fn bare_urls_are_linked() {
        assert_eq!(
            markdown_to_adf("Docs: https://docs.aws.amazon.com/securityhub/."),
            doc(json!([{"type": "paragraph", "content": [
                {"type": "text", "text": "Docs: "},
                {"type": "text", "text": "https://docs.aws.amazon.com/securityhub/", "marks": [{"type": "link", "attrs": {"href": "https://docs.aws.amazon.com/securityhub/"}}]},
                {"type": "text", "text": "."},
            ]}]))
        );
    }

    #[test]
    fn mailto_links_are_allowed() {
        let adf = markdown_to_adf("[mail us](mailto:sec@example.com)");
        assert_eq!(
            adf["content"][0]["content"][0]["marks"][0]["attrs"]["href"],
            "mailto:sec@example.com"
        );
    }

    #[test]
    fn unsafe_link_targets_stay_literal() {
        for md in [
            "[click](javascript:alert(1))",
            "[x](data:text/html,hi)",
            "[x](file:///etc/passwd)",
            "[x](https:// spaced)",
        ] {
            let adf = markdown_to_adf(md);
            let text: String = adf["content"][0]["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["marks"].is_null())
                .filter_map(|n| n["text"].as_str())
                .collect();
            assert!(text.starts_with(&md[..3]), "{md} → {adf}");
            assert!(
                !adf.to_string().contains("\"link\""),
                "{md} must not be linked: {adf}"
            );
        }
    }

    #[test]
    fn fenced_code_blocks_keep_text_and_language() {
        assert_eq!(
            markdown_to_adf(
                "```bash\naws s3api put-public-access-block \\\n  --bucket b\n```\nafter"
            ),
            doc(json!([
                {"type": "codeBlock", "attrs": {"language": "bash"}, "content": [
                    {"type": "text", "text": "aws s3api put-public-access-block \\\n  --bucket b"},
                ]},
                {"type": "paragraph", "content": [{"type": "text", "text": "after"}]},
            ]))
        );
        // No language, unclosed fence, markup inside is literal.
        assert_eq!(
            markdown_to_adf("```\n**not bold** [x](https://a.b)"),
            doc(json!([{"type": "codeBlock", "content": [
                {"type": "text", "text": "**not bold** [x](https://a.b)"},
            ]}]))
        );
        // An empty block has no empty text node; a hostile info string is dropped.
        assert_eq!(
            markdown_to_adf("```\"><script>\n```"),
            doc(json!([{"type": "codeBlock", "content": []}]))
        );
    }

    #[test]
    fn headings() {
        assert_eq!(
            markdown_to_adf("## Remediation\n####### seven\n#nospace"),
            doc(json!([
                {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "Remediation"}]},
                {"type": "paragraph", "content": [
                    {"type": "text", "text": "####### seven"},
                    {"type": "hardBreak"},
                    {"type": "text", "text": "#nospace"},
                ]},
            ]))
        );
        // A heading without text is dropped rather than emitted empty.
        assert_eq!(markdown_to_adf("#\n- \n"), doc(json!([])));
    }

    #[test]
    fn unbalanced_markup_is_literal_text() {
        assert_eq!(
            markdown_to_adf("a ** b ` c [d](e"),
            doc(json!([{"type": "paragraph", "content": [
                {"type": "text", "text": "a ** b ` c [d](e"},
            ]}]))
        );
    }
}

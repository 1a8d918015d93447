//! Light Markdown → Jira wiki markup, for Jira Data Center (REST v2), whose text fields are
//! rendered by the wiki renderer.
//!
//! Finding text must come out as the characters it contains, never as markup. Escaping rules:
//! - `{ } [ ] |` (macros, links, mentions, tables) are always escaped with a backslash.
//! - Phrase-effect and list characters `* _ - + ^ ~ ? ! #` are escaped with a backslash unless they
//!   sit between two letters or digits (`us-east-1`, `snake_case`), where Jira's renderer cannot
//!   read them as markup; this keeps ARNs and ids readable in the editor.
//! - `\` itself cannot be escaped with a backslash (`\\` is a line break), so it is written as the
//!   character reference `&#92;`; likewise the first letter of a line that would read as a block
//!   macro (`h1.` … `h6.`, `bq.`).
//! - Inside `{code}` blocks nothing is interpreted except the closing `{code}`, so a literal
//!   `{code` there gets a zero-width space after its brace.
//!
//! Emoticon shortcuts such as `:)` are left alone: they change how text looks, not what it says.
//! Ordered lists always count from 1 (wiki markup has no start number), and a list item's
//! continuation lines are joined with wiki's `\\` line break because a newline would end the item.

use super::markdown::{Block, Line, Span, parse};

/// Converts the Markdown subset described in `ticket::markdown` into Jira wiki markup. Total:
/// any input yields escaped, well-formed markup in linear time.
pub fn markdown_to_wiki(md: &str) -> String {
    let mut out = String::with_capacity(md.len() + md.len() / 8);
    for (n, block) in parse(md).into_iter().enumerate() {
        if n > 0 {
            out.push_str("\n\n");
        }
        match block {
            Block::Paragraph(lines) => {
                for (i, line) in lines.iter().enumerate() {
                    if i > 0 {
                        out.push('\n');
                    }
                    write_line(&mut out, line, true);
                }
            }
            Block::Heading { level, line } => {
                out.push('h');
                out.push(char::from(b'0' + level.clamp(1, 6)));
                out.push_str(". ");
                write_line(&mut out, &line, false);
            }
            Block::List { ordered, items, .. } => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push('\n');
                    }
                    out.push_str(if ordered { "# " } else { "* " });
                    for (j, line) in item.iter().enumerate() {
                        if j > 0 {
                            // A newline would end the item; `\\` is wiki's in-place line break.
                            out.push_str(" \\\\ ");
                        }
                        write_line(&mut out, line, false);
                    }
                }
            }
            Block::Code { language, text } => {
                out.push_str("{code");
                if let Some(language) = language {
                    out.push(':');
                    out.push_str(&language);
                }
                out.push_str("}\n");
                defuse_code(&mut out, &text);
                out.push_str("\n{code}");
            }
        }
    }
    out
}

/// Writes one line of spans. Consecutive bold spans share one `*…*` pair, with surrounding
/// whitespace moved outside it (Jira ignores `* text*`).
fn write_line(out: &mut String, line: &Line, line_start: bool) {
    let mut i = 0;
    while i < line.len() {
        if line[i].strong {
            let mut group = String::new();
            while i < line.len() && line[i].strong {
                write_span(&mut group, &line[i], false);
                i += 1;
            }
            let inner = group.trim();
            if inner.is_empty() {
                out.push_str(&group);
                continue;
            }
            let lead = &group[..group.len() - group.trim_start().len()];
            let trail = &group[group.trim_end().len()..];
            out.push_str(lead);
            out.push('*');
            out.push_str(inner);
            out.push('*');
            out.push_str(trail);
        } else {
            write_span(out, &line[i], line_start && i == 0);
            i += 1;
        }
    }
}

fn write_span(out: &mut String, span: &Span, line_start: bool) {
    match (&span.link, span.code) {
        (Some(href), _) => {
            out.push('[');
            if span.text != *href {
                escape_text(out, &span.text, false);
                out.push('|');
            }
            encode_href(out, href);
            out.push(']');
        }
        (None, true) => {
            out.push_str("{{");
            escape_text(out, &span.text, false);
            out.push_str("}}");
        }
        (None, false) => escape_text(out, &span.text, line_start),
    }
}

/// Escapes plain text (see the module docs for the rules).
fn escape_text(out: &mut String, text: &str, line_start: bool) {
    let mut rest = text;
    if line_start && starts_block_macro(text) {
        // The first char is ASCII (`h` or `b`), so slicing at 1 is safe.
        out.push_str(&format!("&#{};", u32::from(text.as_bytes()[0])));
        rest = &text[1..];
    }
    let mut prev: Option<char> = if rest.len() < text.len() {
        text.chars().next()
    } else {
        None
    };
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        match c {
            '\\' => out.push_str("&#92;"),
            '{' | '}' | '[' | ']' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '*' | '_' | '-' | '+' | '^' | '~' | '?' | '!' | '#' => {
                let inside_word = prev.is_some_and(char::is_alphanumeric)
                    && next.is_some_and(char::is_alphanumeric);
                if !inside_word {
                    out.push('\\');
                }
                out.push(c);
            }
            _ => out.push(c),
        }
        prev = Some(c);
    }
}

fn starts_block_macro(text: &str) -> bool {
    let b = text.as_bytes();
    let heading = b.len() >= 3
        && b[0].eq_ignore_ascii_case(&b'h')
        && (b'1'..=b'6').contains(&b[1])
        && b[2] == b'.';
    let quote = b.len() >= 3 && b[..3].eq_ignore_ascii_case(b"bq.");
    heading || quote
}

/// Link targets are already limited to http/https/mailto; percent-encode the characters that
/// would end or split the `[text|url]` form.
fn encode_href(out: &mut String, href: &str) {
    for c in href.chars() {
        match c {
            '[' => out.push_str("%5B"),
            ']' => out.push_str("%5D"),
            '|' => out.push_str("%7C"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            '\\' => out.push_str("%5C"),
            _ => out.push(c),
        }
    }
}

/// Keeps code text verbatim except that `{code` (any case) cannot close the block early.
fn defuse_code(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(pos) = rest.find('{') {
        out.push_str(&rest[..=pos]);
        rest = &rest[pos + 1..];
        if rest.len() >= 4 && rest.as_bytes()[..4].eq_ignore_ascii_case(b"code") {
            out.push('\u{200B}');
        }
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_is_empty_markup() {
        assert_eq!(markdown_to_wiki(""), "");
        assert_eq!(markdown_to_wiki("\n \n"), "");
    }

    #[test]
    fn block_constructs() {
        let md =
            "# Finding\nline one\nline two\n\n- a\n- b\n\n1. x\n2. y\n\n```bash\naws s3 ls\n```";
        assert_eq!(
            markdown_to_wiki(md),
            "h1. Finding\n\nline one\nline two\n\n* a\n* b\n\n# x\n# y\n\n{code:bash}\naws s3 ls\n{code}"
        );
    }

    #[test]
    fn inline_constructs() {
        assert_eq!(
            markdown_to_wiki(
                "See [the console](https://x.test/a?b=1|2) and `aws s3 ls` **now** https://y.test/z"
            ),
            "See [the console|https://x.test/a?b=1%7C2] and {{aws s3 ls}} *now* [https://y.test/z]"
        );
    }

    #[test]
    fn bold_whitespace_moves_outside_the_stars() {
        assert_eq!(markdown_to_wiki("a** b **c"), "a *b* c");
    }

    #[test]
    fn wiki_specials_in_text_are_escaped() {
        assert_eq!(
            markdown_to_wiki("{color:red}[~admin]|x| *y* _z_ -s- C:\\tmp"),
            "\\{color:red\\}\\[\\~admin\\]\\|x\\| \\*y\\* \\_z\\_ \\-s\\- C:&#92;tmp"
        );
        // Inside words nothing can be markup, so ids stay readable.
        assert_eq!(
            markdown_to_wiki("us-east-1 snake_case a+b"),
            "us-east-1 snake_case a+b"
        );
    }

    #[test]
    fn line_start_markup_is_neutralized() {
        assert_eq!(
            markdown_to_wiki("h1. not a heading"),
            "&#104;1. not a heading"
        );
        assert_eq!(markdown_to_wiki("bq. quote"), "&#98;q. quote");
        assert_eq!(markdown_to_wiki("---- rule"), "\\-\\-\\-\\- rule");
        assert_eq!(markdown_to_wiki("#no list"), "\\#no list");
        assert_eq!(markdown_to_wiki("|| a || b ||"), "\\|\\| a \\|\\| b \\|\\|");
    }

    #[test]
    fn code_blocks_cannot_be_closed_by_their_content() {
        assert_eq!(
            markdown_to_wiki("```\n{code}\n{CODE:x}{noformat}\n```"),
            "{code}\n{\u{200B}code}\n{\u{200B}CODE:x}{noformat}\n{code}"
        );
    }

    #[test]
    fn code_spans_escape_their_content() {
        assert_eq!(markdown_to_wiki("`a}}b`"), "{{a\\}\\}b}}");
    }

    #[test]
    fn multi_line_list_items_use_wiki_line_breaks() {
        assert_eq!(markdown_to_wiki("- a\n  b"), "* a \\\\ b");
    }
}

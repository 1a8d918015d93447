//! The light Markdown that description and comment templates produce, parsed once into a small
//! document tree that both Jira renderers ([`super::adf`] for Cloud, [`super::wiki`] for Data
//! Center) walk.
//!
//! Finding text ends up inside this Markdown, so the parser treats its input as hostile data:
//! only the documented subset means anything, every scan is a forward scan whose result is
//! remembered (so no byte is re-scanned more than a constant number of times: linear time even for
//! 100k unbalanced `[`), nothing recurses on input depth, and control characters are dropped
//! before parsing.
//!
//! Subset: paragraphs (blank-line separated, single newlines are line breaks), `#`..`######`
//! headings, `- ` / `* ` bullet lists, `1. ` / `1) ` ordered lists (flat; an indented line
//! continues the previous item; nested markers are flattened into the same list), fenced code blocks with an optional language, and inline
//! `` `code` ``, `**bold**`, `[text](url)` and bare `http(s)://` URLs. Links only accept http,
//! https and mailto targets; anything else stays literal text.

/// One run of text with its marks. `text` is never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    pub text: String,
    pub strong: bool,
    pub code: bool,
    /// Target of a link mark (already checked to be http/https/mailto).
    pub link: Option<String>,
}

/// One rendered line: never empty.
pub(crate) type Line = Vec<Span>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Block {
    /// Lines separated by hard line breaks; at least one line.
    Paragraph(Vec<Line>),
    Heading {
        level: u8,
        line: Line,
    },
    /// Each item holds its lines (at least one).
    List {
        ordered: bool,
        start: u64,
        items: Vec<Vec<Line>>,
    },
    Code {
        language: Option<String>,
        text: String,
    },
}

/// Parses `md` into blocks. Never fails: anything outside the subset is plain text.
pub(crate) fn parse(md: &str) -> Vec<Block> {
    let clean = strip_controls(md);
    let mut parser = BlockParser::default();
    let mut lines = clean.split('\n');
    while let Some(raw) = lines.next() {
        let indent = raw.len() - raw.trim_start().len();
        let trimmed = raw.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            parser.close();
            let language = fence_language(info);
            let mut body: Vec<&str> = Vec::new();
            for code_line in lines.by_ref() {
                let t = code_line.trim();
                if t.starts_with("```") && t[3..].trim_matches('`').is_empty() {
                    break;
                }
                body.push(code_line);
            }
            parser.blocks.push(Block::Code {
                language,
                text: body.join("\n"),
            });
            continue;
        }
        if trimmed.is_empty() {
            parser.close();
            continue;
        }
        if let Some((level, text)) = heading(trimmed) {
            parser.close();
            let line = parse_inline(text);
            if !line.is_empty() {
                parser.blocks.push(Block::Heading { level, line });
            }
            continue;
        }
        if let Some((ordered, start, text)) = list_marker(trimmed) {
            parser.list_item(ordered, start, parse_inline(text));
            continue;
        }
        parser.text_line(indent, parse_inline(trimmed));
    }
    parser.close();
    parser.blocks
}

/// Normalizes line endings and drops control characters (C0 except tab and newline, DEL, C1),
/// which Jira rejects or renders as garbage and which carry no meaning in a ticket.
fn strip_controls(md: &str) -> std::borrow::Cow<'_, str> {
    let clean = |c: char| c == '\n' || c == '\t' || !c.is_control();
    if md.chars().all(clean) {
        return std::borrow::Cow::Borrowed(md);
    }
    let mut out = String::with_capacity(md.len());
    let mut chars = md.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            out.push('\n');
            if chars.peek() == Some(&'\n') {
                chars.next();
            }
        } else if clean(c) {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Only a plain identifier (`rust`, `c++`, `objective-c`) is taken as a language; anything else
/// is dropped rather than passed on to the ticket system.
fn fence_language(info: &str) -> Option<String> {
    let word = info.trim().trim_matches('`').trim();
    let ok = !word.is_empty()
        && word.len() <= 32
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'#' | b'.' | b'-'));
    ok.then(|| word.to_owned())
}

fn heading(line: &str) -> Option<(u8, &str)> {
    let hashes = line.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &line[hashes..];
    if rest.is_empty() || rest.starts_with([' ', '\t']) {
        // `hashes` is at most 6, so the cast cannot truncate.
        Some((hashes as u8, rest.trim()))
    } else {
        None
    }
}

fn list_marker(line: &str) -> Option<(bool, u64, &str)> {
    // A bare marker is an empty item (the line was trimmed, so `- ` arrives as `-`).
    if line == "-" || line == "*" {
        return Some((false, 1, ""));
    }
    for bullet in ["- ", "* ", "-\t", "*\t"] {
        if let Some(rest) = line.strip_prefix(bullet) {
            return Some((false, 1, rest.trim()));
        }
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=9).contains(&digits) {
        let rest = &line[digits..];
        if rest.len() >= 2
            && matches!(rest.as_bytes()[0], b'.' | b')')
            && matches!(rest.as_bytes()[1], b' ' | b'\t')
        {
            let start = line[..digits].parse().unwrap_or(1);
            return Some((true, start, rest[2..].trim()));
        }
    }
    None
}

#[derive(Default)]
struct BlockParser {
    blocks: Vec<Block>,
    paragraph: Vec<Line>,
    list: Option<(bool, u64, Vec<Vec<Line>>)>,
}

impl BlockParser {
    fn close(&mut self) {
        if !self.paragraph.is_empty() {
            self.blocks
                .push(Block::Paragraph(std::mem::take(&mut self.paragraph)));
        }
        if let Some((ordered, start, items)) = self.list.take()
            && !items.is_empty()
        {
            self.blocks.push(Block::List {
                ordered,
                start,
                items,
            });
        }
    }

    fn list_item(&mut self, ordered: bool, start: u64, line: Line) {
        if !self.paragraph.is_empty() || self.list.as_ref().is_some_and(|l| l.0 != ordered) {
            self.close();
        }
        let list = self
            .list
            .get_or_insert_with(|| (ordered, start, Vec::new()));
        if !line.is_empty() {
            list.2.push(vec![line]);
        }
    }

    fn text_line(&mut self, indent: usize, line: Line) {
        if line.is_empty() {
            return;
        }
        if let Some((_, _, items)) = &mut self.list {
            if indent >= 2
                && let Some(last) = items.last_mut()
            {
                last.push(line);
                return;
            }
            self.close();
        }
        self.paragraph.push(line);
    }
}

/// Remembers the answer of the last forward search for a byte class, so that repeated searches
/// from increasing positions (the only kind the inline parser makes) cost linear time in total.
struct Finder {
    class: fn(u8) -> bool,
    /// Searched from `from` and found `found` (`None`: not before the end).
    from: usize,
    found: Option<usize>,
    valid: bool,
}

impl Finder {
    fn new(class: fn(u8) -> bool) -> Finder {
        Finder {
            class,
            from: 0,
            found: None,
            valid: false,
        }
    }

    fn next(&mut self, bytes: &[u8], from: usize) -> Option<usize> {
        if self.valid && self.from <= from && self.found.is_none_or(|f| f >= from) {
            return self.found;
        }
        let found = bytes
            .get(from..)
            .and_then(|tail| tail.iter().position(|&b| (self.class)(b)))
            .map(|p| p + from);
        self.from = from;
        self.found = found;
        self.valid = true;
        found
    }
}

/// Inline state of one line: the spans built so far and the plain text not yet flushed.
struct InlineBuilder {
    spans: Line,
    pending: String,
    strong: bool,
}

impl InlineBuilder {
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let text = std::mem::take(&mut self.pending);
            self.push(text, false, None);
        }
    }

    /// Adds a span, merging with the previous one when the marks are the same.
    fn push(&mut self, text: String, code: bool, link: Option<String>) {
        if text.is_empty() {
            return;
        }
        // The code mark cannot be combined with strong in ADF; code wins.
        let strong = self.strong && !code;
        if let Some(last) = self.spans.last_mut()
            && last.strong == strong
            && last.code == code
            && last.link == link
        {
            last.text.push_str(&text);
            return;
        }
        self.spans.push(Span {
            text,
            strong,
            code,
            link,
        });
    }
}

fn is_special(b: u8) -> bool {
    matches!(b, b'[' | b'`' | b'*' | b'h' | b'H')
}

/// Parses one line of inline Markdown. Delimiters are ASCII, so every slice boundary below is a
/// char boundary.
pub(crate) fn parse_inline(line: &str) -> Line {
    let bytes = line.as_bytes();
    let mut out = InlineBuilder {
        spans: Vec::new(),
        pending: String::new(),
        strong: false,
    };
    let mut open_bracket = Finder::new(|b| b == b'[');
    let mut close_bracket = Finder::new(|b| b == b']');
    let mut url_end = Finder::new(|b| b == b')' || b.is_ascii_whitespace());
    let mut backtick = Finder::new(|b| b == b'`');
    let mut star = Finder::new(|b| b == b'*');
    // Where the open `**` closes (the bytes of the closing delimiter start here).
    let mut strong_end = usize::MAX;
    let mut i = 0;
    while i < bytes.len() {
        // Copy the run of ordinary bytes in one go.
        let run = bytes[i..]
            .iter()
            .position(|&b| is_special(b))
            .map_or(bytes.len(), |p| p + i);
        let run = run.min(strong_end.max(i));
        if run > i {
            out.pending.push_str(&line[i..run]);
            i = run;
            continue;
        }
        if out.strong && i == strong_end {
            out.flush();
            out.strong = false;
            strong_end = usize::MAX;
            i += 2;
            continue;
        }
        // Inner constructs must close before the enclosing `**` does.
        let limit = if out.strong { strong_end } else { bytes.len() };
        match bytes[i] {
            b'`' => {
                if let Some(close) = backtick.next(bytes, i + 1).filter(|&c| c < limit) {
                    if close > i + 1 {
                        out.flush();
                        out.push(line[i + 1..close].to_owned(), true, None);
                    } else {
                        out.pending.push_str("``");
                    }
                    i = close + 1;
                } else {
                    out.pending.push('`');
                    i += 1;
                }
            }
            b'*' => {
                if bytes.get(i + 1) == Some(&b'*') && !out.strong {
                    match next_double_star(&mut star, bytes, i + 2) {
                        Some(close) if close > i + 2 => {
                            out.flush();
                            out.strong = true;
                            strong_end = close;
                        }
                        _ => out.pending.push_str("**"),
                    }
                    i += 2;
                } else {
                    out.pending.push('*');
                    i += 1;
                }
            }
            b'[' => match link_at(
                line,
                i,
                limit,
                &mut open_bracket,
                &mut close_bracket,
                &mut url_end,
            ) {
                Some((text, href, end)) => {
                    out.flush();
                    out.push(text.to_owned(), false, Some(href.to_owned()));
                    i = end;
                }
                None => {
                    out.pending.push('[');
                    i += 1;
                }
            },
            _ => match bare_url_at(line, i, limit) {
                Some(end) => {
                    out.flush();
                    let url = line[i..end].to_owned();
                    out.push(url.clone(), false, Some(url));
                    i = end;
                }
                None => {
                    // `h`/`H` that does not start a URL: one char (ASCII, so one byte).
                    out.pending.push_str(&line[i..i + 1]);
                    i += 1;
                }
            },
        }
    }
    out.flush();
    out.spans
}

/// Position of the next `**` at or after `from`.
fn next_double_star(star: &mut Finder, bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let s = star.next(bytes, at)?;
        if bytes.get(s + 1) == Some(&b'*') {
            return Some(s);
        }
        at = s + 1;
    }
}

/// `[text](url)` starting at `start`: returns the text, the target and the byte after `)`.
/// Link text may not contain brackets (the innermost `[` wins, as in CommonMark), and the target
/// ends at the first `)` and may not contain whitespace.
fn link_at<'a>(
    line: &'a str,
    start: usize,
    limit: usize,
    open_bracket: &mut Finder,
    close_bracket: &mut Finder,
    url_end: &mut Finder,
) -> Option<(&'a str, &'a str, usize)> {
    let bytes = line.as_bytes();
    let close = close_bracket.next(bytes, start + 1)?;
    if open_bracket
        .next(bytes, start + 1)
        .is_some_and(|o| o < close)
    {
        return None;
    }
    if bytes.get(close + 1) != Some(&b'(') {
        return None;
    }
    let end = url_end.next(bytes, close + 2)?;
    if bytes[end] != b')' || end >= limit {
        return None;
    }
    let text = &line[start + 1..close];
    let href = &line[close + 2..end];
    if text.trim().is_empty() || !is_allowed_href(href) {
        return None;
    }
    Some((text, href, end + 1))
}

/// Link targets a ticket may carry: web and mail links only (no `javascript:`, `data:`, `file:`).
pub(crate) fn is_allowed_href(href: &str) -> bool {
    let lower_prefix = |p: &str| {
        href.len() > p.len()
            && href.is_char_boundary(p.len())
            && href[..p.len()].eq_ignore_ascii_case(p)
    };
    let web = (lower_prefix("https://") || lower_prefix("http://"))
        && href
            .split_once("://")
            .is_some_and(|(_, rest)| rest.starts_with(|c: char| c.is_alphanumeric() || c == '['));
    let mail = lower_prefix("mailto:");
    (web || mail) && !href.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A bare `http(s)://…` URL starting at `start`, returning where it ends. Trailing punctuation
/// belongs to the sentence, not the URL.
fn bare_url_at(line: &str, start: usize, limit: usize) -> Option<usize> {
    let bytes = line.as_bytes();
    if start > 0 && bytes[start - 1].is_ascii_alphanumeric() {
        return None;
    }
    let rest = &bytes[start..];
    let scheme = if rest.len() >= 8 && rest[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else if rest.len() >= 7 && rest[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else {
        return None;
    };
    // The scheme must be followed by a host, checked before scanning so that a failed match
    // costs O(1) and a successful one consumes what it scanned.
    if !line[start + scheme..].starts_with(|c: char| c.is_alphanumeric() || c == '[') {
        return None;
    }
    let mut end = line[start..]
        .char_indices()
        .find(|&(_, c)| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '`'))
        .map_or(line.len(), |(p, _)| p + start)
        .min(limit);
    let has_open_paren = bytes[start..end].contains(&b'(');
    while end > start + scheme {
        let last = bytes[end - 1];
        let trailing = matches!(
            last,
            b'.' | b',' | b';' | b':' | b'!' | b'?' | b'\'' | b']' | b'}' | b'*'
        ) || (last == b')' && !has_open_paren);
        if !trailing {
            break;
        }
        end -= 1;
    }
    (end > start + scheme && line.is_char_boundary(end) && is_allowed_href(&line[start..end]))
        .then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> Span {
        Span {
            text: text.into(),
            strong: false,
            code: false,
            link: None,
        }
    }

    #[test]
    fn finder_skips_rescans() {
        let bytes = b"a]b]c";
        let mut f = Finder::new(|b| b == b']');
        assert_eq!(f.next(bytes, 0), Some(1));
        assert_eq!(f.next(bytes, 1), Some(1));
        assert_eq!(f.next(bytes, 2), Some(3));
        assert_eq!(f.next(bytes, 4), None);
    }

    #[test]
    fn innermost_bracket_makes_the_link() {
        let spans = parse_inline("[[a](https://x.test)");
        assert_eq!(spans[0], plain("["));
        assert_eq!(spans[1].text, "a");
        assert_eq!(spans[1].link.as_deref(), Some("https://x.test"));
    }

    #[test]
    fn bare_url_drops_sentence_punctuation() {
        let spans = parse_inline("see https://example.com/a_(b). next");
        assert_eq!(spans[1].text, "https://example.com/a_(b)");
        assert_eq!(spans[2], plain(". next"));
        let spans = parse_inline("(https://example.com/x)");
        assert_eq!(spans[1].text, "https://example.com/x");
    }

    #[test]
    fn code_inside_bold_drops_bold() {
        let spans = parse_inline("**a `b` c**");
        assert_eq!(spans.len(), 3);
        assert!(spans[0].strong && !spans[0].code);
        assert!(spans[1].code && !spans[1].strong);
        assert!(spans[2].strong);
    }

    #[test]
    fn code_span_cannot_escape_bold() {
        // The backtick pair straddles the closing `**`: it is literal text.
        let spans = parse_inline("**a `b** c`");
        assert_eq!(spans[0].text, "a `b");
        assert!(spans[0].strong);
        assert_eq!(spans[1], plain(" c`"));
    }

    #[test]
    fn controls_are_dropped_and_crlf_normalized() {
        let blocks = parse("a\u{0}b\r\nc\u{7f}\u{1b}[31m");
        assert_eq!(
            blocks,
            vec![Block::Paragraph(vec![
                vec![plain("ab")],
                vec![plain("c[31m")]
            ])]
        );
    }
}

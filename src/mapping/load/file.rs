//! Where in a mapping file an error is: byte offsets turned into the 1-based lines of
//! `file:line` messages, and the lines a (multi-line) TOML value's content spans.

use std::ops::{Range, RangeInclusive};
use std::path::Path;

/// One file being loaded: where errors point to.
pub(in crate::mapping) struct FileCtx<'a> {
    pub(in crate::mapping) path: &'a Path,
    /// File name only, for template locations (`payments.toml:23 (rules[0].jira.summary)`).
    pub(super) name: String,
    pub(in crate::mapping) src: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> FileCtx<'a> {
    pub(in crate::mapping) fn new(path: &'a Path, src: &'a str) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let line_starts = std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        FileCtx {
            path,
            name,
            src,
            line_starts,
        }
    }

    /// 1-based line of a byte offset.
    pub(in crate::mapping) fn line(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// The lines a value's content spans: from [`FileCtx::content_line`] to the line of its last
    /// byte (the closing quote of a string).
    pub(super) fn value_lines(&self, span: Range<usize>) -> RangeInclusive<usize> {
        let first = self.content_line(span.start);
        let last = self.line(span.end.saturating_sub(1)).max(first);
        first..=last
    }

    /// Line where a string value's *content* starts: a multi-line string (`'''` / `"""`) drops
    /// the newline right after its opening quotes, so its first line is the next one. This keeps
    /// template-internal line numbers pointing at the right line of the file.
    fn content_line(&self, value_start: usize) -> usize {
        let line = self.line(value_start);
        let rest = self.src.get(value_start..).unwrap_or("");
        let multi = rest.starts_with("'''") || rest.starts_with("\"\"\"");
        let after = rest.get(3..).unwrap_or("");
        if multi && (after.starts_with('\n') || after.starts_with("\r\n")) {
            line + 1
        } else {
            line
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_content_lines() {
        let src = "a = 1\nb = '''\nx\n{{ y'''\nc = \"\"\"z\"\"\"\n";
        let ctx = FileCtx::new(Path::new("t.toml"), src);
        assert_eq!(ctx.line(0), 1);
        assert_eq!(ctx.line(5), 1);
        assert_eq!(ctx.line(6), 2);
        let b = src.find("'''").unwrap_or(0);
        assert_eq!(ctx.content_line(b), 3);
        let c = src.find("\"\"\"").unwrap_or(0);
        assert_eq!(ctx.content_line(c), 5);
    }
}

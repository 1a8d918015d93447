//! Incremental reading of a file of messages for `render` and `plan`: a top-level JSON array of
//! bare findings is read element by element, and a stream of top-level values (one message,
//! NDJSON, or events simply concatenated, pretty-printed or not) value by value. A top-level
//! object that starts with `"Findings": [` (what `aws securityhub get-findings(-v2)` prints, one
//! page or all of them merged, pages possibly concatenated) is read element by element too, its
//! other keys (`NextToken`) checked and skipped. Only one element's bytes are held at a time, so
//! memory does not grow with the input.
//!
//! [`Splitter`] only finds where each element ends (tracking strings, escapes and nesting); the
//! element is then parsed and decoded by [`decode_chunk`] exactly as [`decode_each`](super::decode_each)
//! would decode it inside the whole input, with errors naming the same paths (`[3].Severity`) and
//! positions in the whole input (`line 7 column 3`).

use std::io::{self, BufRead};

use super::envelope::{Path, decode_bare, decode_value, parse_json_at};
use super::{DecodeError, EachFinding, Finding};

/// Where a [`Chunk`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// Element `index` of a top-level array: a bare finding.
    ArrayElement(usize),
    /// Top-level value `index` of a stream of messages; `alone` when it is the only one (a
    /// plain single message), so its errors need no "which message" prefix.
    Message { index: usize, alone: bool },
    /// Element `index` of the `Findings` array of a `get-findings` listing, the top-level value
    /// `message` of the input, which starts on line `line`: a bare finding.
    Listed {
        message: usize,
        line: usize,
        index: usize,
    },
}

/// The bytes of one element, and where it starts in the input (1-based line and column).
#[derive(Debug, Clone)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub kind: ChunkKind,
    pub line: usize,
    pub column: usize,
}

impl Chunk {
    /// What to put before a decode error of this chunk so the operator finds it: nothing for an
    /// array element (its path starts with `[index]`), a lone message or the first listing (its
    /// paths start with `Findings[index]`), else the message's number and line.
    pub fn error_prefix(&self) -> String {
        match self.kind {
            ChunkKind::Message {
                index,
                alone: false,
            } => format!("message {} (line {}): ", index + 1, self.line),
            ChunkKind::Listed { message, line, .. } if message > 0 => {
                format!("message {} (line {line}): ", message + 1)
            }
            _ => String::new(),
        }
    }

    /// Every finding of this chunk; for one that does not decode, or for the whole chunk when
    /// its message cannot be read, the problem as the operator should see it
    /// (`[3].Severity: …`, `message 2 (line 7): detail-type: …`). What `render` reports and
    /// `plan` counts.
    pub fn findings(&self) -> Vec<Result<Finding, String>> {
        match decode_chunk(self) {
            Ok(each) => each
                .into_iter()
                .map(|r| r.map_err(|e| format!("{}{e}", self.error_prefix())))
                .collect(),
            Err(e) => vec![Err(format!("{}{e}", self.error_prefix()))],
        }
    }
}

/// Decodes one chunk: an array element as a bare finding at path `[index]`, a message as
/// [`decode_each`](super::decode_each) decodes a whole input.
pub fn decode_chunk(chunk: &Chunk) -> Result<EachFinding, DecodeError> {
    match chunk.kind {
        ChunkKind::ArrayElement(index) => {
            let at = Path::Index(&Path::Root, index);
            let value = parse_json_at(&chunk.bytes, at, (chunk.line, chunk.column))?;
            Ok(vec![decode_bare(value, at)])
        }
        ChunkKind::Message { .. } => {
            let value = parse_json_at(&chunk.bytes, Path::Root, (chunk.line, chunk.column))?;
            decode_value(value, Path::Root, true)
        }
        ChunkKind::Listed { index, .. } => {
            let listing = Path::Key(&Path::Root, LISTING_KEY);
            let at = Path::Index(&listing, index);
            let value = parse_json_at(&chunk.bytes, at, (chunk.line, chunk.column))?;
            Ok(vec![decode_bare(value, at)])
        }
    }
}

/// The key of the findings in `get-findings` output.
const LISTING_KEY: &str = "Findings";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing read yet.
    Start,
    /// Inside a top-level array; `first` until an element has been read.
    Array {
        first: bool,
    },
    /// A stream of top-level values.
    Values,
    /// Inside the `Findings` array of a `get-findings` listing, top-level value `message`
    /// starting on `line`; `first` until an element has been read, `next` the next element's
    /// index.
    Listing {
        first: bool,
        message: usize,
        line: usize,
        next: usize,
    },
    Done,
}

/// Splits a reader into [`Chunk`]s. An `Err` is fatal (unreadable input, or JSON broken in a way
/// that loses track of where elements end); the iterator ends after it. A syntax error inside a
/// balanced element is not the splitter's concern: that element fails to decode and the next one
/// is read.
pub struct Splitter<R> {
    reader: R,
    state: State,
    /// Position of the next unread byte.
    line: usize,
    column: usize,
    index: usize,
    /// A fatal error found right after an element, reported after that element.
    pending: Option<DecodeError>,
    /// Buffers handed back by [`Splitter::recycle`], reused for the next chunks.
    spare: Vec<Vec<u8>>,
}

impl<R: BufRead> Splitter<R> {
    pub fn new(reader: R) -> Splitter<R> {
        Splitter {
            reader,
            state: State::Start,
            line: 1,
            column: 1,
            index: 0,
            pending: None,
            spare: Vec::new(),
        }
    }

    /// Hands a chunk's buffer back for reuse. Keeps allocation in the thread that reads when
    /// chunks are processed elsewhere (`render --jobs`), which some allocators (mimalloc) need to
    /// reuse memory promptly.
    pub fn recycle(&mut self, mut bytes: Vec<u8>) {
        if self.spare.len() < 1024 {
            bytes.clear();
            self.spare.push(bytes);
        }
    }

    fn advance(&mut self, b: u8) {
        self.reader.consume(1);
        if b == b'\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
    }

    /// Skips JSON whitespace (and a UTF-8 byte order mark at the very start); returns the next
    /// byte without consuming it.
    fn skip_ws(&mut self) -> io::Result<Option<u8>> {
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            let n = buf
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(buf.len());
            let newlines = buf[..n].iter().filter(|&&b| b == b'\n').count();
            let after_last_newline = buf[..n]
                .iter()
                .rposition(|&b| b == b'\n')
                .map(|p| n - p - 1);
            let next = buf.get(n).copied();
            self.reader.consume(n);
            self.line += newlines;
            match after_last_newline {
                Some(k) => self.column = 1 + k,
                None => self.column += n,
            }
            if let Some(b) = next {
                return Ok(Some(b));
            }
        }
    }

    fn error(&self, message: &str) -> DecodeError {
        DecodeError::new(
            "",
            format!(
                "invalid JSON at line {} column {}: {message}",
                self.line, self.column
            ),
        )
    }

    /// Reads one JSON value starting at the next byte (not whitespace) into `out`. Returns false
    /// when the input ended inside it (the bytes read so far are in `out`, so the parser can
    /// say what is missing). Only strings, escapes and brackets are looked at; the runs between
    /// them are skipped in one go. `scan` is where the value's reading stands: fresh, or primed
    /// with bytes already in `out`.
    fn value(&mut self, out: &mut Vec<u8>, in_array: bool, mut scan: Scan) -> io::Result<bool> {
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                // A scalar ends at the end of the input; anything else is cut off.
                return Ok(scan.scalar);
            }
            let (taken, done) = scan.feed(buf, in_array);
            out.extend_from_slice(&buf[..taken]);
            let consumed = &buf[..taken];
            let newlines = consumed.iter().filter(|&&b| b == b'\n').count();
            if newlines > 0 {
                let last = consumed.iter().rposition(|&b| b == b'\n').unwrap_or(0);
                self.line += newlines;
                self.column = taken - last;
            } else {
                self.column += taken;
            }
            self.reader.consume(taken);
            if done {
                return Ok(true);
            }
        }
    }

    /// Reads the head of a `get-findings` listing, `{ "Findings" : [`, into `out`, byte by byte
    /// as long as the input follows it. True when it is all there (the array's elements come
    /// next); false at the first byte that differs (left unread), the bytes read so far in `out`
    /// to be continued as an ordinary value.
    fn listing_head(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        /// `{`, then the key with its quotes, `:` and `[`; whitespace may come between them.
        const KEY: &[u8] = b"\"Findings\"";
        #[derive(Clone, Copy)]
        enum Step {
            Open,
            Key(usize),
            Colon,
            Bracket,
        }
        let mut step = Step::Open;
        loop {
            let Some(&b) = self.reader.fill_buf()?.first() else {
                return Ok(false);
            };
            let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
            let next = match step {
                Step::Open if b == b'{' => Step::Key(0),
                Step::Key(0) | Step::Colon | Step::Bracket if space => step,
                Step::Key(i) if b == KEY[i] => {
                    if i + 1 == KEY.len() {
                        Step::Colon
                    } else {
                        Step::Key(i + 1)
                    }
                }
                Step::Colon if b == b':' => Step::Bracket,
                Step::Bracket if b == b'[' => {
                    self.advance(b);
                    out.push(b);
                    return Ok(true);
                }
                _ => return Ok(false),
            };
            self.advance(b);
            out.push(b);
            step = next;
        }
    }

    /// Reads the rest of a listing after its `Findings` array, up to the object's closing `}`:
    /// nothing, or more members (`"NextToken": …`), which must be valid JSON and are skipped.
    fn listing_tail(&mut self) -> Result<(), DecodeError> {
        let io = |e: io::Error| DecodeError::new("", format!("reading input: {e}"));
        match self.skip_ws().map_err(io)? {
            Some(b'}') => {
                self.advance(b'}');
                Ok(())
            }
            Some(b',') => {
                let (line, column) = (self.line, self.column);
                // Checked as the object `{` + the members + `}`; positions then point into it.
                let mut tail = vec![b'{'];
                self.advance(b',');
                let inside = Scan {
                    started: true,
                    depth: 1,
                    ..Scan::default()
                };
                if !self.value(&mut tail, false, inside).map_err(io)? {
                    return Err(self.error("EOF while parsing an object"));
                }
                match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&tail) {
                    Ok(members) if members.is_empty() => Err(DecodeError::new(
                        "",
                        format!(
                            "invalid JSON at line {line} column {column}: trailing comma after \
                             the Findings array"
                        ),
                    )),
                    Ok(_) => Ok(()),
                    Err(e) => Err(DecodeError::new(
                        "",
                        format!(
                            "invalid JSON after the Findings array (from line {line} column \
                             {column}): {e}"
                        ),
                    )),
                }
            }
            None => Err(self.error("EOF while parsing an object")),
            Some(_) => Err(self.error("expected `,` or `}` after the Findings array")),
        }
    }

    fn next_chunk(&mut self) -> Result<Option<Chunk>, DecodeError> {
        let io = |e: io::Error| DecodeError::new("", format!("reading input: {e}"));
        loop {
            match self.state {
                State::Done => return self.pending.take().map_or(Ok(None), Err),
                State::Start => {
                    let first = self.skip_ws().map_err(io)?;
                    if first == Some(0xEF) && self.line == 1 && self.column == 1 {
                        let buf = self.reader.fill_buf().map_err(io)?;
                        if buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
                            self.reader.consume(3);
                            continue;
                        }
                    }
                    match first {
                        None => {
                            // Nothing at all: the parser's own complaint about empty input.
                            self.state = State::Done;
                            return Ok(Some(Chunk {
                                bytes: Vec::new(),
                                kind: ChunkKind::Message {
                                    index: 0,
                                    alone: true,
                                },
                                line: self.line,
                                column: self.column,
                            }));
                        }
                        Some(b'[') => {
                            self.advance(b'[');
                            self.state = State::Array { first: true };
                        }
                        Some(_) => self.state = State::Values,
                    }
                }
                State::Array { first } | State::Listing { first, .. } => {
                    let Some(b) = self.skip_ws().map_err(io)? else {
                        self.state = State::Done;
                        return Err(self.error("EOF while parsing a list"));
                    };
                    if b == b']' {
                        if !first {
                            self.state = State::Done;
                            return Err(self.error("trailing comma"));
                        }
                        self.advance(b']');
                        match self.close_list() {
                            Ok(()) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    let (line, column) = (self.line, self.column);
                    let kind = match &mut self.state {
                        State::Listing {
                            first,
                            message,
                            line,
                            next,
                        } => {
                            *first = false;
                            *next += 1;
                            ChunkKind::Listed {
                                message: *message,
                                line: *line,
                                index: *next - 1,
                            }
                        }
                        _ => {
                            self.state = State::Array { first: false };
                            self.index += 1;
                            ChunkKind::ArrayElement(self.index - 1)
                        }
                    };
                    let mut bytes = self.spare.pop().unwrap_or_default();
                    let complete = self.value(&mut bytes, true, Scan::default()).map_err(io)?;
                    let chunk = Chunk {
                        bytes,
                        kind,
                        line,
                        column,
                    };
                    if !complete {
                        // Cut off inside the element: decoding it reports where.
                        self.state = State::Done;
                        return Ok(Some(chunk));
                    }
                    match self.skip_ws().map_err(io)? {
                        Some(b',') => self.advance(b','),
                        Some(b']') => {
                            self.advance(b']');
                            self.pending = self.close_list().err();
                        }
                        None => {
                            self.state = State::Done;
                            self.pending = Some(self.error("EOF while parsing a list"));
                        }
                        Some(_) => {
                            self.state = State::Done;
                            self.pending = Some(self.error("expected `,` or `]`"));
                        }
                    }
                    return Ok(Some(chunk));
                }
                State::Values => {
                    let Some(first) = self.skip_ws().map_err(io)? else {
                        self.state = State::Done;
                        return Ok(None);
                    };
                    let (line, column) = (self.line, self.column);
                    let mut bytes = self.spare.pop().unwrap_or_default();
                    let mut scan = Scan::default();
                    if first == b'{' {
                        if self.listing_head(&mut bytes).map_err(io)? {
                            self.recycle(bytes);
                            self.state = State::Listing {
                                first: true,
                                message: self.index,
                                line,
                                next: 0,
                            };
                            self.index += 1;
                            continue;
                        }
                        // Not a listing: go on reading the object from where the head stopped.
                        scan.feed(&bytes, false);
                    }
                    let complete = self.value(&mut bytes, false, scan).map_err(io)?;
                    let at_end = !complete || self.skip_ws().map_err(io)?.is_none();
                    let chunk = Chunk {
                        bytes,
                        kind: ChunkKind::Message {
                            index: self.index,
                            alone: self.index == 0 && at_end,
                        },
                        line,
                        column,
                    };
                    self.index += 1;
                    if !complete {
                        self.state = State::Done;
                    }
                    return Ok(Some(chunk));
                }
            }
        }
    }

    /// After the `]` of a list: a top-level array ends the input (only whitespace may follow);
    /// a listing's `Findings` array is followed by the rest of its object, then the next value.
    fn close_list(&mut self) -> Result<(), DecodeError> {
        if let State::Listing { .. } = self.state {
            return match self.listing_tail() {
                Ok(()) => {
                    self.state = State::Values;
                    Ok(())
                }
                Err(e) => {
                    self.state = State::Done;
                    Err(e)
                }
            };
        }
        self.state = State::Done;
        let io = |e: io::Error| DecodeError::new("", format!("reading input: {e}"));
        if self.skip_ws().map_err(io)?.is_some() {
            return Err(self.error("trailing characters"));
        }
        Ok(())
    }
}

/// Where [`Splitter::value`] is inside the value it is reading, across buffer refills.
#[derive(Default)]
struct Scan {
    started: bool,
    depth: usize,
    in_string: bool,
    escaped: bool,
    scalar: bool,
}

impl Scan {
    /// Consumes bytes of `buf` up to the end of the value; returns how many belong to it and
    /// whether the value is complete.
    fn feed(&mut self, buf: &[u8], in_array: bool) -> (usize, bool) {
        let mut i = 0;
        if !self.started {
            self.started = true;
            match buf[0] {
                b'{' | b'[' => self.depth = 1,
                b'"' => self.in_string = true,
                // A closer with nothing open: hand it to the parser, which names it.
                b'}' | b']' => return (1, true),
                b',' if in_array => return (0, true),
                _ => self.scalar = true,
            }
            i = 1;
        }
        if self.scalar {
            let end = buf[i..]
                .iter()
                .position(|b| {
                    matches!(
                        b,
                        b' ' | b'\t' | b'\n' | b'\r' | b'{' | b'[' | b'"' | b',' | b']' | b'}'
                    )
                })
                .map(|p| p + i);
            return match end {
                Some(end) => (end, true),
                None => (buf.len(), false),
            };
        }
        while i < buf.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                match buf[i..].iter().position(|&b| b == b'"' || b == b'\\') {
                    None => return (buf.len(), false),
                    Some(p) => {
                        i += p;
                        if buf[i] == b'\\' {
                            self.escaped = true;
                        } else {
                            self.in_string = false;
                            if self.depth == 0 {
                                return (i + 1, true);
                            }
                        }
                        i += 1;
                    }
                }
                continue;
            }
            match buf[i..]
                .iter()
                .position(|&b| matches!(b, b'"' | b'{' | b'[' | b'}' | b']'))
            {
                None => return (buf.len(), false),
                Some(p) => {
                    i += p;
                    match buf[i] {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => self.depth += 1,
                        _ => {
                            self.depth -= 1;
                            if self.depth == 0 {
                                return (i + 1, true);
                            }
                        }
                    }
                    i += 1;
                }
            }
        }
        (buf.len(), false)
    }
}

impl<R: BufRead> Iterator for Splitter<R> {
    type Item = Result<Chunk, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &str) -> Vec<Result<(String, ChunkKind, usize, usize), String>> {
        // A tiny buffer so elements straddle buffer boundaries.
        let reader = io::BufReader::with_capacity(3, input.as_bytes());
        Splitter::new(reader)
            .map(|r| {
                r.map(|c| {
                    (
                        String::from_utf8(c.bytes).unwrap_or_default(),
                        c.kind,
                        c.line,
                        c.column,
                    )
                })
                .map_err(|e| e.to_string())
            })
            .collect()
    }

    #[test]
    fn arrays_yield_their_elements_with_positions() {
        let got = split("[\n {\"a\": \"]}\\\"\"},\n  {\"b\": [1, 2]} , 3 ]\n");
        assert_eq!(
            got,
            vec![
                Ok((
                    "{\"a\": \"]}\\\"\"}".into(),
                    ChunkKind::ArrayElement(0),
                    2,
                    2
                )),
                Ok(("{\"b\": [1, 2]}".into(), ChunkKind::ArrayElement(1), 3, 3)),
                Ok(("3".into(), ChunkKind::ArrayElement(2), 3, 19)),
            ]
        );
        assert_eq!(split("[]"), vec![]);
        assert_eq!(split(" [ ] "), vec![]);
    }

    #[test]
    fn value_streams_yield_each_value() {
        let got = split("{\"a\":1}\n{\"b\":\n2}{\"c\":3}");
        let kinds: Vec<_> = got
            .iter()
            .map(|r| r.as_ref().map(|c| (c.0.as_str(), c.1, c.2)).ok())
            .collect();
        assert_eq!(
            kinds,
            vec![
                Some((
                    "{\"a\":1}",
                    ChunkKind::Message {
                        index: 0,
                        alone: false
                    },
                    1
                )),
                Some((
                    "{\"b\":\n2}",
                    ChunkKind::Message {
                        index: 1,
                        alone: false
                    },
                    2
                )),
                Some((
                    "{\"c\":3}",
                    ChunkKind::Message {
                        index: 2,
                        alone: false
                    },
                    3
                )),
            ]
        );
        let single = split("  {\"a\": 1}\n");
        assert_eq!(
            single,
            vec![Ok((
                "{\"a\": 1}".into(),
                ChunkKind::Message {
                    index: 0,
                    alone: true
                },
                1,
                3
            ))]
        );
    }

    #[test]
    fn broken_structure_is_fatal_and_cut_off_elements_are_handed_on() {
        let got = split("[{\"a\":1} {\"b\":2}]");
        assert_eq!(got.len(), 2);
        assert!(got[1].as_ref().is_err_and(|e| e.contains("expected `,`")));
        assert!(split("[1,]").iter().any(|r| r.is_err()));
        let cut = split("[{\"a\": [1, 2");
        assert_eq!(
            cut,
            vec![Ok((
                "{\"a\": [1, 2".into(),
                ChunkKind::ArrayElement(0),
                1,
                2
            ))]
        );
    }

    #[test]
    fn get_findings_listings_yield_their_elements_and_skip_the_other_keys() {
        let input = "{ \"Findings\" :\n [{\"a\": 1},\n {\"b\": \"}\"}],\n \"NextToken\": \"x]}\"}\n\
                     {\"Findings\": [{\"c\": 3}]}\n{\"Findings\": [], \"NextToken\": null}\n{\"d\": 4}";
        let got = split(input);
        assert_eq!(
            got,
            vec![
                Ok((
                    "{\"a\": 1}".into(),
                    ChunkKind::Listed {
                        message: 0,
                        line: 1,
                        index: 0
                    },
                    2,
                    3
                )),
                Ok((
                    "{\"b\": \"}\"}".into(),
                    ChunkKind::Listed {
                        message: 0,
                        line: 1,
                        index: 1
                    },
                    3,
                    2
                )),
                Ok((
                    "{\"c\": 3}".into(),
                    ChunkKind::Listed {
                        message: 1,
                        line: 5,
                        index: 0
                    },
                    5,
                    15
                )),
                Ok((
                    "{\"d\": 4}".into(),
                    ChunkKind::Message {
                        index: 3,
                        alone: false
                    },
                    7,
                    1
                )),
            ]
        );
    }

    #[test]
    fn objects_that_only_look_like_a_listing_at_first_are_ordinary_messages() {
        for input in [
            "{\"Fin\": 1}",
            "{\"FindingsX\": [1]}",
            "{\"Findings\": 5}",
            "{\"NextToken\": null, \"Findings\": [{\"a\": 1}]}",
            "{ }",
        ] {
            let got = split(input);
            assert_eq!(
                got,
                vec![Ok((
                    input.to_owned(),
                    ChunkKind::Message {
                        index: 0,
                        alone: true
                    },
                    1,
                    1
                ))],
                "{input}"
            );
        }
    }

    #[test]
    fn a_broken_listing_is_fatal_after_the_elements_before_it() {
        for (input, error) in [
            (
                "{\"Findings\": [{\"a\": 1}], \"NextToken\" 1}",
                "after the Findings array",
            ),
            ("{\"Findings\": [{\"a\": 1}], }", "trailing comma"),
            ("{\"Findings\": [{\"a\": 1}] x", "expected `,` or `}`"),
            ("{\"Findings\": [{\"a\": 1}], \"NextToken\": \"x\"", "EOF"),
            ("{\"Findings\": [{\"a\": 1}]", "EOF"),
        ] {
            let got = split(input);
            assert_eq!(got.len(), 2, "{input}: {got:?}");
            assert!(got[0].is_ok(), "{input}: {got:?}");
            assert!(
                got[1].as_ref().is_err_and(|e| e.contains(error)),
                "{input}: {got:?}"
            );
        }
    }

    #[test]
    fn listing_elements_decode_at_their_path_and_later_listings_name_their_message() {
        let finding = "{\"SchemaVersion\": \"2018-10-08\", \"Severity\": \"HIGH\"}";
        let input = format!("{{\"Findings\": [{finding}]}}\n{{\"Findings\": [{finding}]}}");
        let problems: Vec<String> = Splitter::new(input.as_bytes())
            .filter_map(Result::ok)
            .flat_map(|c| c.findings())
            .filter_map(Result::err)
            .collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("Findings[0]."), "{problems:?}");
        assert!(
            problems[1].starts_with("message 2 (line 2): Findings[0]."),
            "{problems:?}"
        );
    }

    #[test]
    fn decode_errors_name_the_element_and_the_position_in_the_whole_input() {
        let input = "[\n  {\"Id\": 1},\n  {\"SchemaVersion\": \"2018-10-08\", \"Id\": \n}\n]";
        let chunks: Vec<Chunk> = Splitter::new(input.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        assert_eq!(chunks.len(), 2);
        let first = decode_chunk(&chunks[0]).map(|each| {
            each.into_iter()
                .map(|r| r.err().map(|e| e.path))
                .collect::<Vec<_>>()
        });
        assert_eq!(first, Ok(vec![Some("[0]".to_owned())]));
        let second = decode_chunk(&chunks[1]).err().map(|e| e.to_string());
        assert!(
            second
                .as_deref()
                .is_some_and(|e| e.starts_with("[1]: invalid JSON at line 4 column 1")),
            "{second:?}"
        );
    }
}

//! Incremental reading of a file of messages for `render`: a top-level JSON array of bare
//! findings is read element by element, and a stream of top-level values (one message, NDJSON,
//! or events simply concatenated, pretty-printed or not) value by value. Only one element's bytes
//! are held at a time, so memory does not grow with the input.
//!
//! [`Splitter`] only finds where each element ends (tracking strings, escapes and nesting); the
//! element is then parsed and decoded by [`decode_chunk`] exactly as [`decode_each`](super::decode_each)
//! would decode it inside the whole input, with errors naming the same paths (`[3].Severity`) and
//! positions in the whole input (`line 7 column 3`).

use std::io::{self, BufRead};

use super::envelope::{Path, decode_bare, decode_value, parse_json_at};
use super::{DecodeError, EachFinding};

/// Where a [`Chunk`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// Element `index` of a top-level array: a bare finding.
    ArrayElement(usize),
    /// Top-level value `index` of a stream of messages; `alone` when it is the only one (a
    /// plain single message), so its errors need no "which message" prefix.
    Message { index: usize, alone: bool },
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
    /// array element (its path starts with `[index]`) or a lone message, else the message's
    /// number and line.
    pub fn error_prefix(&self) -> String {
        match self.kind {
            ChunkKind::Message {
                index,
                alone: false,
            } => format!("message {} (line {}): ", index + 1, self.line),
            _ => String::new(),
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
    }
}

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
    /// them are skipped in one go.
    fn value(&mut self, out: &mut Vec<u8>, in_array: bool) -> io::Result<bool> {
        let mut scan = Scan::default();
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
                State::Array { first } => {
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
                        self.state = State::Done;
                        if self.skip_ws().map_err(io)?.is_some() {
                            return Err(self.error("trailing characters"));
                        }
                        return Ok(None);
                    }
                    let (line, column) = (self.line, self.column);
                    let mut bytes = self.spare.pop().unwrap_or_default();
                    let complete = self.value(&mut bytes, true).map_err(io)?;
                    let chunk = Chunk {
                        bytes,
                        kind: ChunkKind::ArrayElement(self.index),
                        line,
                        column,
                    };
                    self.index += 1;
                    if !complete {
                        // Cut off inside the element: decoding it reports where.
                        self.state = State::Done;
                        return Ok(Some(chunk));
                    }
                    match self.skip_ws().map_err(io)? {
                        Some(b',') => {
                            self.advance(b',');
                            self.state = State::Array { first: false };
                        }
                        Some(b']') => {
                            self.advance(b']');
                            self.state = State::Done;
                            if self.skip_ws().map_err(io)?.is_some() {
                                self.pending = Some(self.error("trailing characters"));
                            }
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
                    if self.skip_ws().map_err(io)?.is_none() {
                        self.state = State::Done;
                        return Ok(None);
                    }
                    let (line, column) = (self.line, self.column);
                    let mut bytes = self.spare.pop().unwrap_or_default();
                    let complete = self.value(&mut bytes, false).map_err(io)?;
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

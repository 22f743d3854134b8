//! Streaming source of log lines: a file, a gzip file (detected by its magic bytes) or stdin.
//!
//! The source never holds more than one line in memory, and a line longer than
//! [`ReaderOptions::max_line_bytes`] is skipped byte by byte rather than buffered, so one
//! runaway line cannot exhaust memory. Every bad line is reported with its 1-based number.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

use std::path::Path;

use flate2::read::MultiGzDecoder;

/// How the reader treats its input.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    /// Lines longer than this are counted as [`BadLineKind::TooLong`] and skipped.
    pub max_line_bytes: usize,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            max_line_bytes: 16 << 20,
        }
    }
}

/// Why a line could not be read as an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BadLineKind {
    InvalidUtf8,
    InvalidJson,
    /// The line ends inside a JSON value (a write cut short).
    Truncated,
    MissingField,
    WrongType,
    TooLong,
}

impl BadLineKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::InvalidUtf8 => "invalid_utf8",
            Self::InvalidJson => "invalid_json",
            Self::Truncated => "truncated",
            Self::MissingField => "missing_field",
            Self::WrongType => "wrong_type",
            Self::TooLong => "too_long",
        }
    }

    /// Maps a serde_json failure to the kind an operator acts on.
    pub fn classify(e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        match e.classify() {
            Category::Eof => Self::Truncated,
            Category::Syntax | Category::Io => Self::InvalidJson,
            Category::Data => {
                if e.to_string().starts_with("missing field") {
                    Self::MissingField
                } else {
                    Self::WrongType
                }
            }
        }
    }
}

impl fmt::Display for BadLineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One rejected line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: u64,
    pub kind: BadLineKind,
    pub message: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.kind, self.message)
    }
}

/// Tally of bad lines: the first [`BadLineReport::KEEP`] in full, then counts by kind.
#[derive(Debug, Clone, Default)]
pub struct BadLineReport {
    pub first: Vec<BadLine>,
    pub by_kind: BTreeMap<BadLineKind, u64>,
    pub total: u64,
}

impl BadLineReport {
    pub const KEEP: usize = 20;

    pub fn record(&mut self, bad: BadLine) {
        self.total += 1;
        *self.by_kind.entry(bad.kind).or_default() += 1;
        if self.first.len() < Self::KEEP {
            self.first.push(bad);
        }
    }
}

impl fmt::Display for BadLineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total == 0 {
            return writeln!(f, "bad lines: 0");
        }
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(f, "bad lines: {} ({})", self.total, kinds.join(", "))?;
        for b in &self.first {
            writeln!(f, "  {b}")?;
        }
        if self.total > self.first.len() as u64 {
            writeln!(
                f,
                "  … {} more, counted above by kind",
                self.total - self.first.len() as u64
            )?;
        }
        Ok(())
    }
}

/// One line as read from the source, without its line ending.
#[derive(Debug)]
pub enum RawLine {
    Line {
        number: u64,
        bytes: Vec<u8>,
    },
    /// A line longer than the limit; its bytes were discarded.
    TooLong {
        number: u64,
        bytes: u64,
    },
}

/// A line of a [`LineBatch`], borrowed from the batch's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchLine<'a> {
    Line {
        number: u64,
        bytes: &'a [u8],
    },
    /// A line longer than the limit; its bytes were discarded.
    TooLong {
        number: u64,
        bytes: u64,
    },
}

#[derive(Debug, Clone, Copy)]
enum Span {
    Line {
        number: u64,
        start: usize,
        end: usize,
    },
    TooLong {
        number: u64,
        bytes: u64,
    },
}

/// Many lines read in one go: one buffer and where each line lies in it. Reading a log a
/// batch at a time costs one copy of its bytes (the kernel's, into the batch), not a
/// buffer and a copy per line.
#[derive(Debug, Default)]
pub struct LineBatch {
    data: Vec<u8>,
    spans: Vec<Span>,
}

impl LineBatch {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<BatchLine<'_>> {
        self.spans.get(i).map(|span| match *span {
            Span::Line { number, start, end } => BatchLine::Line {
                number,
                bytes: &self.data[start..end],
            },
            Span::TooLong { number, bytes } => BatchLine::TooLong { number, bytes },
        })
    }

    pub fn lines(&self) -> impl Iterator<Item = BatchLine<'_>> + '_ {
        (0..self.spans.len()).filter_map(|i| self.get(i))
    }
}

/// The lines of a log, a batch or one at a time.
pub struct LineSource {
    input: Box<dyn Read + Send>,
    options: ReaderOptions,
    number: u64,
    /// The start of a line that a read cut in two, carried into the next batch.
    carry: Vec<u8>,
    /// Inside a line over the limit: how many of its bytes were dropped so far.
    skipping: Option<u64>,
    eof: bool,
    /// An error met after some complete lines: given once those lines are out.
    error: Option<io::Error>,
    /// What [`LineSource::next_line`] hands out one by one.
    pending: LineBatch,
    next_pending: usize,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Bytes asked of the input per read.
const READ_BYTES: usize = 256 << 10;

impl LineSource {
    /// Opens a path, or stdin for `-`; gzip is recognised by content, not by name.
    pub fn open(path: &Path, options: ReaderOptions) -> io::Result<Self> {
        if path == Path::new("-") {
            return Ok(Self::from_reader(io::stdin(), options));
        }
        let file = File::open(path)?;
        Ok(Self::from_reader(file, options))
    }

    /// Wraps any byte source, unpacking it when it starts with the gzip magic bytes.
    pub fn from_reader(reader: impl Read + Send + 'static, options: ReaderOptions) -> Self {
        // A small buffer, only to look at the first bytes: reads larger than it go straight
        // from the input into the batch once it is drained.
        let mut buffered = BufReader::with_capacity(8 << 10, reader);
        let is_gzip = buffered
            .fill_buf()
            .map(|b| b.starts_with(&GZIP_MAGIC))
            .unwrap_or(false);
        let input: Box<dyn Read + Send> = if is_gzip {
            Box::new(MultiGzDecoder::new(buffered))
        } else {
            Box::new(buffered)
        };
        Self {
            input,
            options,
            number: 0,
            carry: Vec::new(),
            skipping: None,
            eof: false,
            error: None,
            pending: LineBatch::default(),
            next_pending: 0,
        }
    }

    /// The next line, `None` at the end, or the I/O error (such as a gzip stream cut short)
    /// that ends the input. Empty lines are skipped but counted in the numbering.
    pub fn next_line(&mut self) -> Option<io::Result<RawLine>> {
        loop {
            if let Some(line) = self.pending.get(self.next_pending) {
                self.next_pending += 1;
                return Some(Ok(match line {
                    BatchLine::Line { number, bytes } => RawLine::Line {
                        number,
                        bytes: bytes.to_vec(),
                    },
                    BatchLine::TooLong { number, bytes } => RawLine::TooLong { number, bytes },
                }));
            }
            match self.next_batch(64 << 10)? {
                Ok(batch) => {
                    self.pending = batch;
                    self.next_pending = 0;
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The next complete lines, about `target_bytes` of them (more when one line is longer),
    /// `None` at the end, or the I/O error that ends the input once the lines before it are
    /// out (a line the error cut short is lost with it). Empty lines are skipped but counted.
    pub fn next_batch(&mut self, target_bytes: usize) -> Option<io::Result<LineBatch>> {
        let mut data = std::mem::take(&mut self.carry);
        let mut spans = Vec::new();
        let mut line_start = 0;
        let mut scan_from = 0;
        loop {
            while let Some(i) = memchr::memchr(b'\n', &data[scan_from..]) {
                let end = scan_from + i;
                self.end_line(&data, line_start, end, &mut spans);
                line_start = end + 1;
                scan_from = line_start;
            }
            // What is left is the start of a line: keep it, or only count it when the line
            // is already over the limit.
            let partial = (data.len() - line_start) as u64;
            if let Some(skipped) = self.skipping.as_mut() {
                *skipped += partial;
                data.truncate(line_start);
            } else if partial > self.options.max_line_bytes as u64 {
                self.skipping = Some(partial);
                data.truncate(line_start);
            }
            scan_from = data.len();
            if self.eof || (data.len() >= target_bytes && !spans.is_empty()) {
                break;
            }
            let old = data.len();
            data.resize(old + READ_BYTES, 0);
            match self.input.read(&mut data[old..]) {
                Ok(n) => {
                    data.truncate(old + n);
                    self.eof = n == 0;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => data.truncate(old),
                Err(e) => {
                    data.truncate(line_start);
                    self.skipping = None;
                    self.error = Some(e);
                    self.eof = true;
                    break;
                }
            }
        }
        if self.eof && self.error.is_none() {
            // The last line may lack its line ending.
            if self.skipping.is_some() || line_start < data.len() {
                let end = data.len();
                self.end_line(&data, line_start, end, &mut spans);
                line_start = end;
            }
        } else {
            self.carry = data[line_start..].to_vec();
        }
        data.truncate(line_start);
        if spans.is_empty() {
            return self.error.take().map(Err);
        }
        Some(Ok(LineBatch { data, spans }))
    }

    /// Files the line `data[start..end]` (its ending excluded), or the over-long line that
    /// ends there.
    fn end_line(&mut self, data: &[u8], start: usize, end: usize, spans: &mut Vec<Span>) {
        self.number += 1;
        let number = self.number;
        let len = (end - start) as u64;
        if let Some(skipped) = self.skipping.take() {
            spans.push(Span::TooLong {
                number,
                bytes: skipped + len,
            });
            return;
        }
        if len > self.options.max_line_bytes as u64 {
            spans.push(Span::TooLong { number, bytes: len });
            return;
        }
        let end = if end > start && data[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        if data[start..end].iter().all(u8::is_ascii_whitespace) {
            return;
        }
        spans.push(Span::Line { number, start, end });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut src = LineSource::from_reader(
            io::Cursor::new(input.to_vec()),
            ReaderOptions {
                max_line_bytes: max,
            },
        );
        let mut out = Vec::new();
        while let Some(item) = src.next_line() {
            out.push(match item {
                Ok(RawLine::Line { number, bytes }) => {
                    format!("{number}:{}", String::from_utf8_lossy(&bytes))
                }
                Ok(RawLine::TooLong { number, bytes }) => format!("{number}:too_long({bytes})"),
                Err(e) => format!("err:{e}"),
            });
        }
        out
    }

    #[test]
    fn numbers_lines_and_skips_blank_ones() {
        assert_eq!(lines(b"a\n\nb\r\nc", 100), vec!["1:a", "3:b", "4:c"]);
    }

    #[test]
    fn over_long_line_is_skipped_not_buffered() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\nok\n");
        assert_eq!(lines(&input, 10), vec!["1:too_long(50)", "2:ok"]);
    }

    /// Hands out its bytes a few at a time, then optionally fails: reads that cut lines
    /// anywhere, as pipes and decompressors do.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
        fail_at_end: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                return if self.fail_at_end {
                    Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut short"))
                } else {
                    Ok(0)
                };
            }
            let n = self.step.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            self.step = self.step % 7 + 1;
            Ok(n)
        }
    }

    fn batched(input: &[u8], max: usize, target: usize, fail: bool) -> Vec<String> {
        let reader = Trickle {
            data: input.to_vec(),
            at: 0,
            step: 1,
            fail_at_end: fail,
        };
        let mut src = LineSource::from_reader(
            reader,
            ReaderOptions {
                max_line_bytes: max,
            },
        );
        let mut out = Vec::new();
        while let Some(batch) = src.next_batch(target) {
            match batch {
                Ok(b) => {
                    assert!(!b.is_empty());
                    out.extend(b.lines().map(|l| match l {
                        BatchLine::Line { number, bytes } => {
                            format!("{number}:{}", String::from_utf8_lossy(bytes))
                        }
                        BatchLine::TooLong { number, bytes } => {
                            format!("{number}:too_long({bytes})")
                        }
                    }))
                }
                Err(e) => out.push(format!("err:{e}")),
            }
        }
        out
    }

    #[test]
    fn batches_split_lines_wherever_reads_cut_them() {
        let mut input = Vec::new();
        let mut want = Vec::new();
        for i in 1..=200u64 {
            match i % 9 {
                0 => input.extend_from_slice(b"\n"), // blank: counted, not returned
                4 => {
                    input.extend_from_slice(&[b'y'; 40]);
                    input.extend_from_slice(b"\r\n");
                    want.push(format!("{i}:too_long(41)"));
                }
                _ => {
                    let line = format!("{{\"n\":{i}}}");
                    input.extend_from_slice(line.as_bytes());
                    input.extend_from_slice(if i % 2 == 0 { b"\r\n" } else { b"\n" });
                    want.push(format!("{i}:{line}"));
                }
            }
        }
        for target in [1, 5, 64, 1 << 20] {
            assert_eq!(batched(&input, 30, target, false), want, "target {target}");
        }
        // The same input without a final line ending ends with the same last line.
        input.truncate(input.len() - 1);
        assert_eq!(batched(&input, 30, 64, false).last(), want.last());
    }

    #[test]
    fn an_error_comes_after_the_complete_lines_and_the_cut_line_is_lost() {
        let out = batched(b"one\ntwo\nthr", 100, 1 << 20, true);
        assert_eq!(out, vec!["1:one", "2:two", "err:cut short"]);
    }

    #[test]
    fn empty_input_has_no_lines() {
        assert!(lines(b"", 10).is_empty());
    }
}

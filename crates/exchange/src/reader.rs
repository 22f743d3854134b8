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

/// The lines of a log, one at a time.
pub struct LineSource {
    input: Box<dyn BufRead + Send>,
    options: ReaderOptions,
    number: u64,
    done: bool,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

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
        let mut buffered = BufReader::with_capacity(1 << 20, reader);
        let is_gzip = buffered
            .fill_buf()
            .map(|b| b.starts_with(&GZIP_MAGIC))
            .unwrap_or(false);
        let input: Box<dyn BufRead + Send> = if is_gzip {
            Box::new(BufReader::with_capacity(
                1 << 20,
                MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
        Self {
            input,
            options,
            number: 0,
            done: false,
        }
    }

    /// Number of the last line returned.
    pub fn line_number(&self) -> u64 {
        self.number
    }

    /// The next line, `None` at the end, or the I/O error (such as a gzip stream cut short)
    /// that ends the input. Empty lines are skipped but counted in the numbering.
    pub fn next_line(&mut self) -> Option<io::Result<RawLine>> {
        loop {
            if self.done {
                return None;
            }
            match self.read_one() {
                Ok(Some(RawLine::Line { bytes, .. }))
                    if bytes.iter().all(u8::is_ascii_whitespace) =>
                {
                    continue
                }
                Ok(Some(line)) => return Some(Ok(line)),
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }

    fn read_one(&mut self) -> io::Result<Option<RawLine>> {
        let max = self.options.max_line_bytes;
        let mut bytes = Vec::new();
        let mut skipped: u64 = 0;
        let mut saw_any = false;
        loop {
            let buf = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                break;
            }
            saw_any = true;
            let (chunk, found_newline) = match memchr::memchr(b'\n', buf) {
                Some(i) => (&buf[..i], true),
                None => (buf, false),
            };
            if skipped == 0 && bytes.len() + chunk.len() <= max {
                bytes.extend_from_slice(chunk);
            } else {
                skipped += (bytes.len() + chunk.len()) as u64;
                bytes = Vec::new();
            }
            let used = chunk.len() + usize::from(found_newline);
            self.input.consume(used);
            if found_newline {
                break;
            }
        }
        if !saw_any {
            return Ok(None);
        }
        self.number += 1;
        if skipped > 0 {
            return Ok(Some(RawLine::TooLong {
                number: self.number,
                bytes: skipped,
            }));
        }
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        Ok(Some(RawLine::Line {
            number: self.number,
            bytes,
        }))
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

    #[test]
    fn empty_input_has_no_lines() {
        assert!(lines(b"", 10).is_empty());
    }
}

//! Any bytes through the log reader, the line parser and the detector: nothing may panic,
//! and every line is either an exchange or a classified bad line.
#![no_main]

use std::cell::RefCell;

use detect::{Config, Detector};
use exchange::{parse_line, LineSource, RawLine, ReaderOptions};
use libfuzzer_sys::fuzz_target;

/// Hands out its bytes `step` at a time.
struct Chunked {
    data: Vec<u8>,
    at: usize,
    step: usize,
}

impl std::io::Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

thread_local! {
    // Building the phrase automaton is costly; one detector serves many inputs and is
    // replaced now and then so its account table stays small.
    static DETECTOR: RefCell<(Detector, u32)> = RefCell::new((Detector::new(Config::default()), 0));
}

fuzz_target!(|data: &[u8]| {
    DETECTOR.with(|cell| {
        let mut guard = cell.borrow_mut();
        let (detector, runs) = &mut *guard;
        *runs += 1;
        if *runs % 5000 == 0 {
            *detector = Detector::new(Config::default());
        }
        // The first byte picks how many bytes each read returns, so lines are cut anywhere,
        // as pipes and decompressors cut them.
        let Some((&step, rest)) = data.split_first() else {
            return;
        };
        let reader = Chunked {
            data: rest.to_vec(),
            at: 0,
            step: usize::from(step % 64) + 1,
        };
        let mut source = LineSource::from_reader(
            reader,
            ReaderOptions {
                max_line_bytes: 4096,
            },
        );
        while let Some(item) = source.next_line() {
            let Ok(line) = item else { break };
            if let RawLine::Line { bytes, .. } = line {
                if let Ok(ex) = parse_line(&bytes) {
                    detector.observe(&ex);
                }
            }
        }
        let _ = detector.reports();
    });
});

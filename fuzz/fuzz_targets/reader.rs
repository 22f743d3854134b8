//! Any bytes through the log reader, the line parser and the detector: nothing may panic,
//! and every line is either an exchange or a classified bad line.
#![no_main]

use std::cell::RefCell;

use detect::{Config, Detector};
use exchange::{parse_line, LineSource, RawLine, ReaderOptions};
use libfuzzer_sys::fuzz_target;

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
        let mut source = LineSource::from_reader(std::io::Cursor::new(data.to_vec()), ReaderOptions { max_line_bytes: 4096 });
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

//! Cheap, deterministic text features of one prompt: word hashes, a MinHash topic bucket,
//! a masked skeleton of the prompt's start and end, and phrase families (reasoning
//! elicitation, task generation). Only a bounded window of each prompt is read, so the cost
//! per exchange does not grow with context length.

use serde::{Deserialize, Serialize};

use crate::sketch::{hash_bytes, mix};

/// How many bytes of a prompt's start and end are read.
const HEAD_BYTES: usize = 2048;
const TAIL_BYTES: usize = 768;
/// How much of a text identifies it (a conversation opening, a system prompt).
const IDENTITY_BYTES: usize = 384;
/// Words at each end of a prompt that form its skeleton.
const SKELETON_WORDS: usize = 6;
/// Words in one fragment of a wrapper (see [`TextFacts::fragments`]).
const FRAGMENT_WORDS: usize = 4;
/// How far from either end a fragment may start: a wrapper may sit behind a few words that
/// vary ("Hi!", "Task:", a name).
const FRAGMENT_OFFSETS: usize = 4;
/// Words kept from each end: enough for the skeleton and for every fragment.
const END_WORDS: usize = FRAGMENT_WORDS + FRAGMENT_OFFSETS - 1;
/// Fragments of one prompt: a window at each offset from the start and from the end, and a
/// word at each offset from the start with the last word (a wrapper's two ends around its
/// slot, "### Instruction: ... ### Response:").
pub const FRAGMENTS: usize = 3 * FRAGMENT_OFFSETS;
/// A prompt shorter than this has no fragments: a window would be most of it, and a short
/// prompt sent again is a repeat, not a wrapper.
const MIN_FRAGMENT_PROMPT_WORDS: usize = 2 * FRAGMENT_WORDS;

/// The text facts of one prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TextFacts {
    pub words: u32,
    /// Hash of the whole (bounded) normalised word sequence: equal prompts, equal hash.
    pub exact: u64,
    /// The text's [`normalised_hash`]: its length and the words of its start.
    pub identity: u64,
    /// MinHash of the word set: two prompts share it with probability ≈ their Jaccard similarity.
    pub minhash: u64,
    /// First and last words with numbers masked: what a template keeps while its slots vary.
    pub head_skeleton: u64,
    pub tail_skeleton: u64,
    /// Short windows of words (numbers masked) near the prompt's ends, as 16-bit fingerprints
    /// (0: none; a chance match costs nothing but a slot for a while): a wrapper's fixed
    /// words, found in every prompt it wraps even where a few varying words come before it or
    /// the wrapper changes from call to call. The skeletons above need the first (or last)
    /// six words to be the same; these do not.
    pub fragments: [u16; FRAGMENTS],
}

/// Whether a byte belongs inside a word: an ASCII letter or digit, or any non-ASCII byte
/// (so UTF-8 letters stay whole).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// One word of a text: its hash (ASCII case folded), whether it is mostly digits, and where it
/// lies in the bytes that were split.
#[derive(Debug, Clone, Copy)]
struct Word {
    hash: u64,
    numeric: bool,
    start: usize,
    end: usize,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Per byte of `x` (high bits already cleared), the high bit set where it lies in `lo..=hi`.
#[inline]
fn in_range(x7: u64, lo: u8, hi: u8) -> u64 {
    let at_least_lo = x7 + ONES * u64::from(0x80 - lo);
    let above_hi = x7 + ONES * u64::from(0x7f - hi);
    at_least_lo & !above_hi & HIGH
}

/// Per byte of eight, the high bit set where the byte is an ASCII digit.
#[inline]
fn digit_bytes(x: u64) -> u64 {
    in_range(x & !HIGH, b'0', b'9') & !x
}

/// Per byte of eight, the high bit set where the byte is a word byte ([`is_word_byte`]).
#[inline]
fn word_bytes(x: u64) -> u64 {
    let x7 = x & !HIGH;
    (in_range(x7 | (ONES * 0x20), b'a', b'z') | in_range(x7, b'0', b'9') | x) & HIGH
}

/// The high bits of eight bytes gathered into the low eight bits, first byte lowest.
#[inline]
fn high_bits(x: u64) -> u64 {
    ((x >> 7).wrapping_mul(0x0002_0408_1020_4081) >> 49) & 0xff
}

/// Eight bytes from `at` (zeros past the end), first byte lowest.
#[inline]
fn load8(text: &[u8], at: usize) -> u64 {
    match text.get(at..at + 8) {
        Some(b) => u64::from_le_bytes(b.try_into().expect("eight bytes")),
        None => {
            let mut buf = [0u8; 8];
            let rest = &text[at.min(text.len())..];
            buf[..rest.len()].copy_from_slice(rest);
            u64::from_le_bytes(buf)
        }
    }
}

/// Hashes one word (all its bytes word bytes), eight bytes at a time with ASCII case folded.
#[inline]
fn hash_word(text: &[u8], start: usize, end: usize) -> (u64, bool) {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let len = end - start;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut digits = 0u32;
    let mut at = start;
    while at < end {
        let mut x = load8(text, at);
        let take = (end - at).min(8);
        if take < 8 {
            x &= (1u64 << (8 * take)) - 1;
        }
        // ASCII upper-case letters get 0x20 added; other bytes are left as they are.
        let upper = in_range(x & !HIGH, b'A', b'Z') & !x;
        x |= upper >> 2;
        // Sum of one bit per digit byte, without POPCNT (not in the x86-64 baseline).
        digits += ((digit_bytes(x) >> 7).wrapping_mul(ONES) >> 56) as u32;
        h = (h ^ x).wrapping_mul(K).rotate_left(29);
        at += 8;
    }
    (mix(h ^ ((len as u64) << 56)), digits as usize * 2 >= len)
}

/// How a character outside ASCII takes part in words.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CharClass {
    /// Inside a word, as ASCII letters are (accented Latin, Greek, Cyrillic, Hangul, ...).
    Letter,
    /// Chinese and Japanese are written without spaces, so a run of Han ideographs or kana
    /// is a sentence; its overlapping pairs of characters are its words (as CJK search
    /// indexes do: pairs are about as distinctive as words, single characters recur in every
    /// text).
    Paired,
    /// Between words, as ASCII punctuation is: typographic quotes and dashes, CJK and
    /// full-width punctuation, Latin-1 signs.
    Separator,
}

fn class_of(c: char) -> CharClass {
    match u32::from(c) {
        0x3040..=0x30FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xF900..=0xFAFF
        | 0xFF66..=0xFF9F
        | 0x20000..=0x3FFFF => CharClass::Paired,
        0x80..=0xBF
        | 0xD7
        | 0xF7
        | 0x2000..=0x206F
        | 0x3000..=0x303F
        | 0xFF00..=0xFF0F
        | 0xFF1A..=0xFF20
        | 0xFF3B..=0xFF40
        | 0xFF5B..=0xFF65 => CharClass::Separator,
        _ => CharClass::Letter,
    }
}

fn emit_word(text: &[u8], start: usize, end: usize, f: &mut impl FnMut(Word)) {
    let (hash, numeric) = hash_word(text, start, end);
    f(Word {
        hash,
        numeric,
        start,
        end,
    });
}

/// Emits the words of one run of word bytes in a text that is not all ASCII: the run itself
/// when it is ASCII, else split by [`class_of`] its characters.
fn emit_run(text: &[u8], start: usize, end: usize, f: &mut impl FnMut(Word)) {
    let run = &text[start..end];
    if run.is_ascii() {
        return emit_word(text, start, end, f);
    }
    // A run ends at ASCII bytes or at the text's ends, so it holds whole characters.
    let Ok(run) = std::str::from_utf8(run) else {
        return emit_word(text, start, end, f);
    };
    let mut letters: Option<usize> = None;
    // The previous character of a run of paired characters, and whether a pair was emitted.
    let mut paired: Option<(usize, usize)> = None;
    let mut pairs = 0;
    let close_pairs = |paired: &mut Option<(usize, usize)>, pairs: &mut usize, f: &mut _| {
        if let Some((s, e)) = paired.take() {
            if *pairs == 0 {
                emit_word(text, s, e, f);
            }
        }
        *pairs = 0;
    };
    for (i, c) in run.char_indices() {
        let at = start + i;
        let next = at + c.len_utf8();
        let class = if c.is_ascii() {
            CharClass::Letter
        } else {
            class_of(c)
        };
        if class != CharClass::Paired {
            close_pairs(&mut paired, &mut pairs, f);
        }
        if class == CharClass::Letter {
            letters.get_or_insert(at);
            continue;
        }
        if let Some(o) = letters.take() {
            emit_word(text, o, at, f);
        }
        if class == CharClass::Paired {
            if let Some((s, _)) = paired {
                emit_word(text, s, next, f);
                pairs += 1;
            }
            paired = Some((at, next));
        }
    }
    close_pairs(&mut paired, &mut pairs, f);
    if let Some(o) = letters {
        emit_word(text, o, end, f);
    }
}

/// Splits on anything that is not a letter or digit (ASCII case folded; see [`class_of`] for
/// the rest), hashing each word, and calls `f` with each.
///
/// The detector's hottest loop. Bytes are classified eight at a time into a bit mask and
/// words found with `trailing_zeros`, so the branches are per word, not per byte (a branch
/// per byte on text mispredicts at every word boundary).
fn for_each_word(text: &[u8], mut f: impl FnMut(Word)) {
    // One test per text, not per word: nearly every prompt is ASCII and takes the plain path.
    let ascii = text.is_ascii();
    let mut emit = |start: usize, end: usize| {
        if ascii {
            emit_word(text, start, end, &mut f)
        } else {
            emit_run(text, start, end, &mut f)
        }
    };
    let mut open: Option<usize> = None;
    let mut base = 0;
    while base < text.len() {
        let mut mask = 0u64;
        for i in 0..8 {
            mask |= high_bits(word_bytes(load8(text, base + 8 * i))) << (8 * i);
        }
        let valid = text.len() - base;
        if valid < 64 {
            mask &= (1u64 << valid) - 1;
        }
        let mut pos = 0u32;
        while pos < 64 {
            let from = u64::MAX << pos;
            match open {
                None => {
                    let starts = mask & from;
                    if starts == 0 {
                        break;
                    }
                    pos = starts.trailing_zeros();
                    open = Some(base + pos as usize);
                }
                Some(start) => {
                    let ends = !mask & from;
                    if ends == 0 {
                        break;
                    }
                    pos = ends.trailing_zeros();
                    emit(start, (base + pos as usize).min(text.len()));
                    open = None;
                }
            }
        }
        base += 64;
    }
    if let Some(start) = open {
        emit(start, text.len());
    }
}

const NUMBER: u64 = 0x4e55_4d42_4552_u64;

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The bounded window of `text` that is analysed: its head, and its tail when it is long.
pub fn window(text: &str) -> (&str, &str) {
    if text.len() <= HEAD_BYTES + TAIL_BYTES {
        return (text, "");
    }
    let head_end = floor_char_boundary(text, HEAD_BYTES);
    let tail_start = floor_char_boundary(text, text.len() - TAIL_BYTES);
    (&text[..head_end], &text[tail_start..])
}

/// The text facts of one prompt, without looking for phrases.
#[cfg(test)]
pub fn text_facts(text: &str) -> TextFacts {
    read(text, None).0
}

/// Reads the bounded window of `text` once: its facts and, when a matcher is given, the phrase
/// families it contains. One pass over the bytes serves both, because this is the detector's
/// hottest loop.
fn read(text: &str, matcher: Option<&PhraseMatcher>) -> (TextFacts, PhraseHits) {
    let (head, tail) = window(text);
    let mut facts = FactsBuilder::new(text.len());
    let mut hits = PhraseHits::default();
    for (part, in_head) in [(head, true), (tail, false)] {
        let bytes = part.as_bytes();
        // A phrase must lie wholly in the head or wholly in the tail.
        let mut recent = RecentWords::default();
        for_each_word(bytes, |w| {
            facts.add(w, in_head);
            if let Some(m) = matcher {
                recent.push(w);
                m.check(bytes, &recent, &mut hits);
            }
        });
    }
    (facts.finish(), hits)
}

/// Folds a text's words into its [`TextFacts`] as they come, with no per-text allocation.
struct FactsBuilder {
    count: usize,
    exact: u64,
    identity: Identity,
    first: [u64; END_WORDS],
    /// The latest `END_WORDS` words, a ring indexed by word count.
    last: [u64; END_WORDS],
    /// Non-numeric words seen, and the MinHash over all of them.
    content_words: usize,
    min_all: u64,
    /// The MinHash over non-numeric words past the first `SKELETON_WORDS`, with the latest
    /// `SKELETON_WORDS` held back: on long prompts the skeleton's words at both ends are left
    /// out, because a template's topic is in its slot, not in the fixed wrapper around it.
    min_inner: u64,
    held: [u64; SKELETON_WORDS],
}

impl FactsBuilder {
    fn new(text_len: usize) -> Self {
        FactsBuilder {
            count: 0,
            exact: 0,
            identity: Identity::new(text_len),
            first: [0; END_WORDS],
            last: [0; END_WORDS],
            content_words: 0,
            min_all: u64::MAX,
            min_inner: u64::MAX,
            held: [u64::MAX; SKELETON_WORDS],
        }
    }

    fn add(&mut self, w: Word, in_head: bool) {
        let masked = if w.numeric { NUMBER } else { w.hash };
        if self.count < END_WORDS {
            self.first[self.count] = masked;
        }
        self.last[self.count % END_WORDS] = masked;
        self.count += 1;
        self.exact = chain(self.exact, w.hash);
        if in_head {
            self.identity.add(w);
        }
        if !w.numeric {
            let h = w.hash;
            self.min_all = self.min_all.min(h);
            let slot = self.content_words % SKELETON_WORDS;
            if self.content_words >= 2 * SKELETON_WORDS {
                self.min_inner = self.min_inner.min(self.held[slot]);
            }
            self.held[slot] = h;
            self.content_words += 1;
        }
    }

    fn finish(self) -> TextFacts {
        let fragments = self.fragments();
        let n = self.count.min(SKELETON_WORDS);
        let mut head_skeleton: u64 = 1;
        for w in &self.first[..n] {
            head_skeleton = mix(head_skeleton ^ w);
        }
        let mut tail_skeleton: u64 = 2;
        for i in 0..n {
            tail_skeleton = mix(tail_skeleton ^ self.last_word(n - i));
        }
        TextFacts {
            words: self.count as u32,
            exact: mix(self.exact),
            identity: self.identity.finish(),
            minhash: if self.content_words > 4 * SKELETON_WORDS {
                self.min_inner
            } else {
                self.min_all
            },
            head_skeleton,
            tail_skeleton,
            fragments,
        }
    }

    /// The `k`-th word from the end (1: the last); only for `k <= END_WORDS.min(count)`.
    fn last_word(&self, k: usize) -> u64 {
        self.last[(self.count - k) % END_WORDS]
    }

    fn fragments(&self) -> [u16; FRAGMENTS] {
        let mut out = [0; FRAGMENTS];
        if self.count < MIN_FRAGMENT_PROMPT_WORDS {
            return out;
        }
        for k in 0..FRAGMENT_OFFSETS {
            out[k] = fingerprint(3, self.first[k..k + FRAGMENT_WORDS].iter().copied());
            out[FRAGMENT_OFFSETS + k] = fingerprint(
                4,
                (0..FRAGMENT_WORDS).map(|i| self.last_word(k + FRAGMENT_WORDS - i)),
            );
            out[2 * FRAGMENT_OFFSETS + k] = fingerprint(5, [self.first[k], self.last_word(1)]);
        }
        out
    }
}

/// A 16-bit fingerprint of a short run of words, never 0 (0 is "no fragment"); `seed` keeps
/// the kinds of fragment apart.
fn fingerprint(seed: u64, words: impl IntoIterator<Item = u64>) -> u16 {
    let h = words.into_iter().fold(seed, |h, w| mix(h ^ w));
    ((h >> 48) as u16).max(1)
}

/// Folds a word into a running hash of a word sequence. One multiply, not a full [`mix`]:
/// this is a chain through every word of a prompt, so its latency is the loop's; the result
/// is mixed once at the end.
#[inline]
fn chain(h: u64, word: u64) -> u64 {
    (h ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A text's identity as its words come: its length and the words that start in its first
/// `IDENTITY_BYTES`, which identify a text well enough and cost the same at any length.
struct Identity(u64);

impl Identity {
    fn new(text_len: usize) -> Self {
        Identity(mix(3 ^ (text_len as u64 / 64)))
    }

    fn add(&mut self, w: Word) {
        if w.start < IDENTITY_BYTES {
            self.0 = chain(self.0, w.hash);
        }
    }

    fn finish(self) -> u64 {
        mix(self.0)
    }
}

/// Hash of a short text such as a system prompt, insensitive to case and spacing: the same
/// value the observer keeps as a system prompt's identity.
pub fn normalised_hash(text: &str) -> u64 {
    // Only the words that start in the first `IDENTITY_BYTES` count (whole), so only those are
    // split.
    let head = window(text).0.as_bytes();
    let mut cut = head.len().min(IDENTITY_BYTES);
    while cut < head.len() && is_word_byte(head[cut]) {
        cut += 1;
    }
    let mut identity = Identity::new(text.len());
    for_each_word(&head[..cut], |w| identity.add(w));
    identity.finish()
}

/// Families of phrases whose presence in a prompt is a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phrase {
    /// Asks for visible step-by-step reasoning (common in evaluations and tutoring too).
    StepByStep,
    /// Asks for the model's hidden or internal reasoning, or a verbatim trace of it.
    HiddenReasoning,
    /// Asks the model to invent new tasks, instructions or questions (self-instruct bootstrapping).
    TaskGeneration,
}

const STEP_BY_STEP: &[&str] = &[
    "step by step",
    "step-by-step",
    "think through",
    "think carefully",
    "show your reasoning",
    "explain your reasoning",
    "show your work",
    "show all your work",
    "show all of your work",
    "show all of your reasoning",
    "reasoning process",
    "chain of thought",
    "chain-of-thought",
    "reason through",
    "walk through your",
    "walk me through your",
    "thought process",
    "let's think",
    "lets think",
    "reasoning steps",
    "each step of your",
    "detailed reasoning",
    "full reasoning",
    "justify each step",
    // The same requests in the languages harvests are most often written in besides
    // English. Words outside ASCII are matched as written (case is folded for ASCII only).
    "一步一步",
    "一步步",
    "逐步推理",
    "逐步思考",
    "思考过程",
    "推理过程",
    "思維過程",
    "推理過程",
    "思维链",
    "段階的に",
    "順を追って",
    "思考過程",
    "단계별로",
    "paso a paso",
    "tu razonamiento",
    "su razonamiento",
    "étape par étape",
    "ton raisonnement",
    "votre raisonnement",
    "schritt für schritt",
    "deine überlegungen",
    "passo a passo",
    "passo dopo passo",
    "seu raciocínio",
    "шаг за шагом",
    "пошагово",
    "ход рассуждений",
    "ход мыслей",
];

const HIDDEN_REASONING: &[&str] = &[
    "internal reasoning",
    "hidden reasoning",
    "reasoning trace",
    "thinking trace",
    "your hidden",
    "inner monologue",
    "internal monologue",
    "scratchpad",
    "<think>",
    "raw thoughts",
    "private reasoning",
    "thinking tokens",
    "verbatim reasoning",
    "reasoning verbatim",
    "exact reasoning",
    "complete chain of thought",
    "full chain of thought",
    "entire chain of thought",
    "unfiltered reasoning",
    "everything you thought",
    "reveal your thinking",
    "reveal your reasoning",
    "before you answered",
    "reasoning behind your answer",
    "内部推理",
    "隐藏的推理",
    "隐藏推理",
    "内心独白",
    "完整的思维链",
    "原始思考",
    "内部の推論",
    "razonamiento interno",
    "razonamiento oculto",
    "raisonnement interne",
    "raisonnement caché",
    "внутренние рассуждения",
    "скрытые рассуждения",
];

const TASK_GENERATION: &[&str] = &[
    "come up with a series of",
    "come up with a list of",
    "come up with new",
    "come up with more",
    "come up with diverse",
    "generate a list of tasks",
    "generate new tasks",
    "generate more tasks",
    "generate diverse",
    "diverse tasks",
    "diverse set of tasks",
    "diverse instructions",
    "diverse set of instructions",
    "new instructions",
    "more instructions",
    "task instructions",
    "instruction-following",
    "list of instructions",
    "brainstorm new tasks",
    "create new tasks",
    "write new tasks",
    "similar tasks",
    "more examples of tasks",
    "new task:",
    "task 1:",
    "instruction 1:",
    "1. instruction:",
    "different types of tasks",
    "different kinds of tasks",
    "novel tasks",
    "novel instructions",
    "生成新的任务",
    "多样化的任务",
    "更多的指令",
    "tareas diversas",
    "nuevas instrucciones",
    "nouvelles instructions",
    "новые инструкции",
];

/// One phrase as the matcher sees it: a sequence of words, and the punctuation that must touch
/// its ends where the phrase has some (`<think>`, `task 1:`).
#[derive(Debug, Clone, Copy)]
struct Pattern {
    last: u64,
    words: usize,
    sequence: u64,
    before: Option<u8>,
    after: Option<u8>,
    family: Phrase,
}

/// The longest phrase, in words.
const MAX_PHRASE_WORDS: usize = 8;

fn sequence_hash(words: impl Iterator<Item = u64>) -> u64 {
    words.fold(0x7068_7261_7365, |s, w| mix(s ^ w))
}

/// Finds the phrase families in a text on its stream of words, during the same pass that
/// computes its [`TextFacts`]. Phrases match whole words, whatever the case and whatever
/// separates them ("step-by-step" is "step by step"), but not inside longer words ("rethink
/// throughout" does not say "think through").
pub struct PhraseMatcher {
    /// One bit per value of a word hash's low 12 bits: whether some phrase ends with such a
    /// word. Most words fail this test and cost nothing more.
    ends: Box<[u64; 64]>,
    /// Sorted by `last`.
    patterns: Vec<Pattern>,
}

impl Default for PhraseMatcher {
    fn default() -> Self {
        let mut patterns = Vec::new();
        for (list, family) in [
            (STEP_BY_STEP, Phrase::StepByStep),
            (HIDDEN_REASONING, Phrase::HiddenReasoning),
            (TASK_GENERATION, Phrase::TaskGeneration),
        ] {
            for phrase in list {
                let bytes = phrase.as_bytes();
                let mut words = Vec::new();
                for_each_word(bytes, |w| words.push(w.hash));
                let edge = |b: u8| (!is_word_byte(b)).then_some(b);
                assert!(
                    !words.is_empty() && words.len() <= MAX_PHRASE_WORDS,
                    "phrase {phrase:?}"
                );
                patterns.push(Pattern {
                    last: *words.last().expect("a phrase has words"),
                    words: words.len(),
                    sequence: sequence_hash(words.iter().copied()),
                    before: edge(bytes[0]),
                    after: edge(bytes[bytes.len() - 1]),
                    family,
                });
            }
        }
        patterns.sort_by_key(|p| p.last);
        let mut ends = Box::new([0u64; 64]);
        for p in &patterns {
            let bit = p.last & 4095;
            ends[(bit >> 6) as usize] |= 1 << (bit & 63);
        }
        Self { ends, patterns }
    }
}

/// The latest words of a text, for matching phrases that end at the newest one.
#[derive(Default)]
struct RecentWords {
    hashes: [u64; MAX_PHRASE_WORDS],
    starts: [usize; MAX_PHRASE_WORDS],
    seen: usize,
    end: usize,
}

impl RecentWords {
    fn push(&mut self, w: Word) {
        let slot = self.seen % MAX_PHRASE_WORDS;
        self.hashes[slot] = w.hash;
        self.starts[slot] = w.start;
        self.seen += 1;
        self.end = w.end;
    }

    /// The `n` latest word hashes, oldest first.
    fn latest(&self, n: usize) -> impl Iterator<Item = u64> + '_ {
        (self.seen - n..self.seen).map(|i| self.hashes[i % MAX_PHRASE_WORDS])
    }

    fn start_of(&self, n: usize) -> usize {
        self.starts[(self.seen - n) % MAX_PHRASE_WORDS]
    }
}

/// Which families a text contains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhraseHits {
    pub step_by_step: bool,
    pub hidden_reasoning: bool,
    pub task_generation: bool,
}

impl PhraseHits {
    fn add(&mut self, family: Phrase) {
        match family {
            Phrase::StepByStep => self.step_by_step = true,
            Phrase::HiddenReasoning => self.hidden_reasoning = true,
            Phrase::TaskGeneration => self.task_generation = true,
        }
    }
}

impl PhraseMatcher {
    /// A prompt's text facts and phrase families, in one pass over its bounded window.
    pub fn read(&self, text: &str) -> (TextFacts, PhraseHits) {
        read(text, Some(self))
    }

    /// The phrase families of a text.
    #[cfg(test)]
    pub fn scan(&self, text: &str) -> PhraseHits {
        self.read(text).1
    }

    /// Notes every phrase that ends with the newest of `recent`, which were split from `bytes`.
    #[inline]
    fn check(&self, bytes: &[u8], recent: &RecentWords, hits: &mut PhraseHits) {
        let newest = recent.hashes[(recent.seen - 1) % MAX_PHRASE_WORDS];
        let bit = newest & 4095;
        if self.ends[(bit >> 6) as usize] & (1 << (bit & 63)) == 0 {
            return;
        }
        let from = self.patterns.partition_point(|p| p.last < newest);
        for p in self.patterns[from..]
            .iter()
            .take_while(|p| p.last == newest)
        {
            if p.words > recent.seen || sequence_hash(recent.latest(p.words)) != p.sequence {
                continue;
            }
            let start = recent.start_of(p.words);
            let before_ok = p.before.is_none_or(|b| start > 0 && bytes[start - 1] == b);
            let after_ok = p.after.is_none_or(|b| bytes.get(recent.end) == Some(&b));
            if before_ok && after_ok {
                hits.add(p.family);
            }
        }
    }
}

/// The network an address is linked by: its /24 (IPv4) or /48 (IPv6), as the network's
/// first address and its prefix length. One rule, used for the `subnet` link and for the
/// indicators `groups` writes.
pub fn network(ip: std::net::IpAddr) -> (std::net::IpAddr, u8) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            (std::net::Ipv4Addr::new(o[0], o[1], o[2], 0).into(), 24)
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            (
                std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).into(),
                48,
            )
        }
    }
}

/// Hashes of a client address, from one parse: the address itself, its [`network`] (/24 or
/// /48) and the block it was allocated from (IPv4 /16, IPv6 /32). A carrier rotates its
/// customers among exits of its own block, and an office's NAT addresses sit in one;
/// residential proxies are other people's home connections on many ISPs, in many blocks.
/// What does not parse as an address is its own network and has no block.
pub fn ip_hashes(ip: &str) -> (u64, u64, Option<u64>) {
    let full = hash_bytes(ip.as_bytes());
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        return (full, full, None);
    };
    let net = match network(addr).0 {
        std::net::IpAddr::V4(net) => mix(u64::from(u32::from_be_bytes(net.octets()))),
        std::net::IpAddr::V6(net) => {
            let s = net.segments();
            mix((u64::from(s[0]) << 32) | (u64::from(s[1]) << 16) | u64::from(s[2]) | (1 << 60))
        }
    };
    let block = match addr {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            mix((u64::from(o[0]) << 8 | u64::from(o[1])) | (2 << 60))
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            mix((u64::from(s[0]) << 16 | u64::from(s[1])) | (3 << 60))
        }
    };
    (full, net, Some(block))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_and_its_network_hash_as_before() {
        // Fixed values: snapshots and facts stored by earlier versions hold these hashes.
        let (_, net, _) = ip_hashes("203.0.113.77");
        assert_eq!(net, mix(u64::from(u32::from_be_bytes([203, 0, 113, 0]))));
        assert_eq!(ip_hashes("203.0.113.9").1, net);
        let (_, v6, _) = ip_hashes("2001:db8:7:1::5");
        assert_eq!(v6, mix((0x2001u64 << 32) | (0xdb8 << 16) | 7 | (1 << 60)));
        assert_eq!(
            network("2001:db8:7:1::5".parse().unwrap()),
            ("2001:db8:7::".parse().unwrap(), 48)
        );
    }

    #[test]
    fn skeleton_ignores_slot_contents_and_numbers() {
        let a = text_facts("Answer the following question carefully and fully: what is the capital of France? Be concise, accurate and complete please.");
        let b = text_facts("Answer the following question carefully and fully: how do tides work on Earth? Be concise, accurate and complete please.");
        assert_eq!(a.head_skeleton, b.head_skeleton);
        assert_eq!(a.tail_skeleton, b.tail_skeleton);
        assert_ne!(a.exact, b.exact);
        let c = text_facts("Item 12 of 40: sort these");
        let d = text_facts("Item 13 of 41: sort these");
        assert_eq!(c.head_skeleton, d.head_skeleton);
    }

    #[test]
    fn a_wrapper_shares_a_fragment_behind_varying_words_where_skeletons_differ() {
        let shared = |a: &TextFacts, b: &TextFacts| {
            a.fragments
                .iter()
                .any(|f| *f != 0 && b.fragments.contains(f))
        };
        // The same wrapper, once behind a greeting: the first six words differ, a window of
        // the wrapper's words does not.
        let a = text_facts("Respond to the request below with a detailed answer. Request: how do tides work on Earth and why");
        let b = text_facts("Hi there! Respond to the request below with a detailed answer. Request: what makes a star collapse into a black hole");
        assert_ne!(a.head_skeleton, b.head_skeleton);
        assert!(shared(&a, &b), "{a:?} {b:?}");
        // A wrapper around both ends with one word at each (the Alpaca format).
        let c = text_facts("### Instruction:\nExplain how vaccines train the immune system to respond\n\n### Response:");
        let d = text_facts("### Instruction:\nWrite a short history of the printing press in Europe\n\n### Response:");
        assert_ne!(c.head_skeleton, d.head_skeleton);
        assert_ne!(c.tail_skeleton, d.tail_skeleton);
        assert!(shared(&c, &d));
        // Two people's own questions share no fragment.
        let e = text_facts("how do tides work on Earth and why do they change over the month");
        let f = text_facts("what makes a star collapse into a black hole at the end of its life");
        assert!(!shared(&e, &f));
        // A prompt of a few words has none: sent again, it is a repeat, not a wrapper.
        assert!(text_facts("summarise this text please")
            .fragments
            .iter()
            .all(|f| *f == 0));
    }

    #[test]
    fn byte_classes_eight_at_a_time_match_one_at_a_time() {
        for b in 0..=255u8 {
            for lane in 0..8 {
                let x = u64::from(b) << (8 * lane);
                let word = high_bits(word_bytes(x)) >> lane & 1 == 1;
                // Zero bytes around it are separators, never word bytes.
                assert_eq!(word, is_word_byte(b), "byte {b:#x} in lane {lane}");
                assert_eq!(high_bits(word_bytes(x)) & !(1 << lane), 0);
                let digit = digit_bytes(x) != 0;
                assert_eq!(digit, b.is_ascii_digit(), "byte {b:#x}");
            }
        }
        for bits in 0..=255u64 {
            let spread = (0..8).fold(0u64, |x, i| x | ((bits >> i & 1) << (8 * i + 7)));
            assert_eq!(high_bits(spread), bits);
        }
    }

    /// Words as a byte-at-a-time splitter finds them.
    fn reference_words(text: &[u8]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = None;
        for (i, &b) in text.iter().enumerate() {
            match (is_word_byte(b), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    out.push((s, i));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            out.push((s, text.len()));
        }
        out
    }

    #[test]
    fn words_are_split_as_byte_by_byte_and_hashed_case_blind() {
        let mut seed = 0x1234_5678_u64;
        let alphabet: &[u8] = b"aZ9 .-\n\xc3\xa9_Qx0<>:";
        for len in 0..300 {
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    seed = mix(seed);
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let mut got = Vec::new();
            let mut hashes = Vec::new();
            for_each_word(&text, |w| {
                got.push((w.start, w.end));
                hashes.push(w.hash);
            });
            assert_eq!(
                got,
                reference_words(&text),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
            let upper = text.to_ascii_uppercase();
            let mut upper_hashes = Vec::new();
            for_each_word(&upper, |w| upper_hashes.push(w.hash));
            assert_eq!(hashes, upper_hashes);
        }
        let mut words = Vec::new();
        for_each_word(b"Item 12 of x9z 2024-11", |w| words.push(w.numeric));
        assert_eq!(words, [false, true, false, false, true, true]);
    }

    #[test]
    fn phrases_match_whole_words_and_their_punctuation() {
        let m = PhraseMatcher::default();
        assert!(m.scan("Solve it step-by-step, please").step_by_step);
        assert!(m.scan("solve it STEP\nby   step").step_by_step);
        assert!(!m.scan("I rethink throughout the day").step_by_step);
        assert!(m.scan("Let's think about it").step_by_step);
        assert!(m.scan("answer inside <think> tags").hidden_reasoning);
        assert!(!m.scan("I think so").hidden_reasoning);
        assert!(m.scan("Task 1: write a poem").task_generation);
        assert!(!m.scan("task 1 of 3 is done").task_generation);
        let long = format!("{} show your work", "filler ".repeat(1000));
        assert!(m.scan(&long).step_by_step, "a phrase in the tail window");
    }

    #[test]
    fn identity_is_the_normalised_hash() {
        let long = "word ".repeat(200);
        let straddling = format!("{} {} tail", "ab ".repeat(127), "x".repeat(40));
        // A word that starts exactly where the identity's bytes end is not part of it.
        let at_the_edge = format!("{}next words", "a ".repeat(IDENTITY_BYTES / 2));
        for text in [
            "",
            "Hello",
            "You are a helpful assistant.",
            &long,
            &straddling,
            &at_the_edge,
        ] {
            assert_eq!(text_facts(text).identity, normalised_hash(text), "{text:?}");
        }
    }

    #[test]
    fn exact_hash_is_case_and_space_insensitive() {
        assert_eq!(
            text_facts("Hello,   World").exact,
            text_facts("hello world").exact
        );
    }

    #[test]
    fn phrases_are_found_case_insensitively() {
        let m = PhraseMatcher::default();
        let h = m.scan("Please THINK step by step. Then reveal your internal reasoning.");
        assert!(h.step_by_step && h.hidden_reasoning && !h.task_generation);
        assert_eq!(m.scan("What is 2+2?"), PhraseHits::default());
        assert!(
            m.scan("Come up with a series of tasks: Task 1: ...")
                .task_generation
        );
    }

    #[test]
    fn phrases_are_found_in_other_languages_and_in_unspaced_scripts() {
        let m = PhraseMatcher::default();
        for text in [
            "请一步一步地思考，然后回答下面的问题。",
            "次の問題を段階的に解いてください。",
            "다음 문제를 단계별로 풀어 주세요.",
            "Resuelve el problema paso a paso, por favor.",
            "Explique votre raisonnement étape par étape.",
            "Löse die Aufgabe Schritt für Schritt.",
            "Реши задачу шаг за шагом.",
        ] {
            assert!(m.scan(text).step_by_step, "{text}");
        }
        assert!(m.scan("完成回答后，请写出你的内部推理。").hidden_reasoning);
        assert!(m.scan("请生成新的任务，越多样越好。").task_generation);
        // Ordinary text in those languages asks for none of it.
        for text in [
            "今天天气很好，我们去公园散步吧。",
            "¿Cuál es la capital de Francia?",
            "Какая погода завтра в Москве?",
        ] {
            assert_eq!(m.scan(text), PhraseHits::default(), "{text}");
        }
    }

    #[test]
    fn unspaced_scripts_are_read_in_pairs_of_characters_and_typographic_punctuation_splits() {
        fn words(t: &str) -> Vec<&str> {
            let mut n = Vec::new();
            for_each_word(t.as_bytes(), |w| n.push(&t[w.start..w.end]));
            n
        }
        assert_eq!(words("请回答"), ["请回", "回答"]);
        assert_eq!(words("好。a"), ["好", "a"]);
        assert_eq!(words("don’t “stop”"), ["don", "t", "stop"]);
        assert_eq!(words("café Москва"), ["café", "Москва"]);
        assert_eq!(words("GPT写的"), ["GPT", "写的"]);
        // A template in Chinese keeps its skeleton while the question in its slot changes.
        let a = text_facts("请一步一步地思考并回答以下问题：一个农场有十二只鸡和三头牛。");
        let b = text_facts("请一步一步地思考并回答以下问题：火车以每小时八十公里的速度行驶。");
        assert_eq!(a.head_skeleton, b.head_skeleton);
        assert_ne!(a.minhash, 0);
        assert_ne!(a.exact, b.exact);
    }

    #[test]
    fn window_respects_char_boundaries() {
        let s = "é".repeat(10_000);
        let (h, t) = window(&s);
        assert!(h.len() <= HEAD_BYTES && !t.is_empty());
    }

    #[test]
    fn ip_networks_group_neighbours() {
        assert_eq!(ip_hashes("198.51.100.7").1, ip_hashes("198.51.100.200").1);
        assert_ne!(ip_hashes("198.51.100.7").1, ip_hashes("198.51.101.7").1);
        assert_eq!(
            ip_hashes("2001:db8:1::1").1,
            ip_hashes("2001:db8:1:ffff::2").1
        );
    }

    #[test]
    fn ip_blocks_are_the_allocation_around_the_network_and_junk_has_none() {
        let block = |ip: &str| ip_hashes(ip).2;
        // Two /24s of one /16: one carrier's or one office's block.
        assert_eq!(block("100.64.12.7"), block("100.64.77.3"));
        assert!(block("100.64.12.7").is_some());
        assert_ne!(block("100.64.12.7"), block("100.65.12.7"));
        assert_eq!(block("2001:db8:1::1"), block("2001:db8:ffff::2"));
        assert_ne!(block("2001:db8:1::1"), block("2001:db9:1::1"));
        // What is not an address is its own network and lies in no block.
        let (full, net, none) = ip_hashes("not-an-address");
        assert_eq!((net, none), (full, None));
    }
}

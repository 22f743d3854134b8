//! Cheap, deterministic text features of one prompt: word hashes, a MinHash topic bucket,
//! a masked skeleton of the prompt's start and end, and phrase families (reasoning
//! elicitation, task generation). Only a bounded window of each prompt is read, so the cost
//! per exchange does not grow with context length.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use crate::sketch::{hash_bytes, mix};

/// How many bytes of a prompt's start and end are read.
const HEAD_BYTES: usize = 2048;
const TAIL_BYTES: usize = 768;
/// How much of a text identifies it (a conversation opening, a system prompt).
const IDENTITY_BYTES: usize = 384;
/// Words at each end of a prompt that form its skeleton.
const SKELETON_WORDS: usize = 6;

/// The text facts of one prompt.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextFacts {
    pub words: u32,
    /// Hash of the whole (bounded) normalised word sequence: equal prompts, equal hash.
    pub exact: u64,
    /// MinHash of the word set: two prompts share it with probability ≈ their Jaccard similarity.
    pub minhash: u64,
    /// First and last words with numbers masked: what a template keeps while its slots vary.
    pub head_skeleton: u64,
    pub tail_skeleton: u64,
}

/// Per byte, what enters a word: the byte ASCII-lowercased, or 0 for a separator (anything
/// not a letter or digit; non-ASCII bytes are kept inside words).
static WORD_BYTE: [u8; 256] = word_bytes();

const fn word_bytes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() || b >= 0x80 {
            table[i] = b.to_ascii_lowercase();
        }
        i += 1;
    }
    table
}

/// Splits on anything that is not a letter or digit (ASCII case folded; non-ASCII bytes kept
/// inside words), hashing each word, and calls `f(hash, is_numeric)`.
///
/// The hot loop of the detector's text features: a word's bytes are gathered eight at a time
/// and multiplied in once per eight, not once per byte, so the loop is not one long chain of
/// dependent multiplications.
fn for_each_word(text: &[u8], mut f: impl FnMut(u64, bool)) {
    const SEED: u64 = 0xcbf2_9ce4_8422_2325;
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = SEED;
    let mut block: u64 = 0;
    let mut len = 0usize;
    let mut digits = 0usize;
    for &b in text {
        let c = WORD_BYTE[b as usize];
        if c != 0 {
            block = (block << 8) | u64::from(c);
            len += 1;
            digits += usize::from(c.wrapping_sub(b'0') < 10);
            if len.is_multiple_of(8) {
                h = (h ^ block).wrapping_mul(K).rotate_left(29);
                block = 0;
            }
        } else if len > 0 {
            f(mix(h ^ block ^ ((len as u64) << 56)), digits * 2 >= len);
            h = SEED;
            block = 0;
            len = 0;
            digits = 0;
        }
    }
    if len > 0 {
        f(mix(h ^ block ^ ((len as u64) << 56)), digits * 2 >= len);
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

pub fn text_facts(text: &str) -> TextFacts {
    let (head, tail) = window(text);
    let mut facts = TextFacts {
        minhash: u64::MAX,
        ..TextFacts::default()
    };
    let mut exact: u64 = 0;
    let mut first: [u64; SKELETON_WORDS] = [0; SKELETON_WORDS];
    let mut last: [u64; SKELETON_WORDS] = [0; SKELETON_WORDS];
    let mut count = 0usize;
    let mut word_hashes: Vec<u64> = Vec::with_capacity(256);
    let mut visit = |h: u64, numeric: bool| {
        let masked = if numeric { NUMBER } else { h };
        if count < SKELETON_WORDS {
            first[count] = masked;
        }
        last[count % SKELETON_WORDS] = masked;
        count += 1;
        exact = mix(exact ^ h);
        if !numeric {
            word_hashes.push(mix(h ^ 0x5eed));
        }
    };
    for_each_word(head.as_bytes(), &mut visit);
    for_each_word(tail.as_bytes(), &mut visit);
    // The topic of a templated prompt is in its slot, not in the fixed wrapper around it:
    // on long prompts, leave the skeleton's words out of the MinHash.
    let content = if word_hashes.len() > 4 * SKELETON_WORDS {
        &word_hashes[SKELETON_WORDS..word_hashes.len() - SKELETON_WORDS]
    } else {
        &word_hashes[..]
    };
    facts.minhash = content.iter().copied().min().unwrap_or(u64::MAX);
    facts.words = count as u32;
    facts.exact = exact;
    let mut hs: u64 = 1;
    for w in first.iter().take(count.min(SKELETON_WORDS)) {
        hs = mix(hs ^ w);
    }
    facts.head_skeleton = hs;
    let mut ts: u64 = 2;
    let n = count.min(SKELETON_WORDS);
    for i in 0..n {
        ts = mix(ts ^ last[(count - n + i) % SKELETON_WORDS]);
    }
    facts.tail_skeleton = ts;
    facts
}

/// Hash of a short text such as a system prompt, insensitive to case and spacing.
pub fn normalised_hash(text: &str) -> u64 {
    // The start and the length identify a text well enough, and cost the same at any length.
    let head = &text.as_bytes()[..text.len().min(IDENTITY_BYTES)];
    let mut h: u64 = mix(3 ^ (text.len() as u64 / 64));
    for_each_word(head, |w, _| h = mix(h ^ w));
    h
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
];

/// Finds the phrase families present in a text with one pass of Aho–Corasick.
pub struct PhraseMatcher {
    automaton: AhoCorasick,
    families: Vec<Phrase>,
}

impl Default for PhraseMatcher {
    fn default() -> Self {
        let mut patterns = Vec::new();
        let mut families = Vec::new();
        for (list, family) in [
            (STEP_BY_STEP, Phrase::StepByStep),
            (HIDDEN_REASONING, Phrase::HiddenReasoning),
            (TASK_GENERATION, Phrase::TaskGeneration),
        ] {
            for p in list {
                patterns.push(*p);
                families.push(family);
            }
        }
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)
            .expect("static phrase list builds");
        Self {
            automaton,
            families,
        }
    }
}

/// Which families a text contains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhraseHits {
    pub step_by_step: bool,
    pub hidden_reasoning: bool,
    pub task_generation: bool,
}

impl PhraseMatcher {
    pub fn scan(&self, text: &str) -> PhraseHits {
        let mut hits = PhraseHits::default();
        let (head, tail) = window(text);
        for part in [head, tail] {
            for m in self.automaton.find_iter(part) {
                match self.families[m.pattern().as_usize()] {
                    Phrase::StepByStep => hits.step_by_step = true,
                    Phrase::HiddenReasoning => hits.hidden_reasoning = true,
                    Phrase::TaskGeneration => hits.task_generation = true,
                }
            }
        }
        hits
    }
}

/// Hash of an IP address and of its network (/24 for IPv4, /48 for IPv6).
pub fn ip_hashes(ip: &str) -> (u64, u64) {
    let full = hash_bytes(ip.as_bytes());
    let net = match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            mix(u64::from(u32::from_be_bytes([o[0], o[1], o[2], 0])))
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            mix((u64::from(s[0]) << 32) | (u64::from(s[1]) << 16) | u64::from(s[2]) | (1 << 60))
        }
        Err(_) => full,
    };
    (full, net)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

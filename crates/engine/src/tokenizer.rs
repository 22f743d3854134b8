//! The model's own tokenizer, read from the GGUF file's metadata (`tokenizer.ggml.*`): GPT-2
//! style byte-level BPE, as SmolLM2 uses it. Text is split into pieces (each digit alone, then
//! the GPT-2 pattern: contractions, words with their leading space, numbers, punctuation runs,
//! whitespace), each piece's bytes are written as printable characters, and adjacent symbols
//! are merged by the merge list's order until none applies. Special tokens (`<|im_start|>`,
//! `<|im_end|>`, `<|endoftext|>`, ...) are matched whole first, never merged into.
//!
//! The watermark is keyed on these ids, so the engine that marks and the detector that finds
//! the mark read text through this one tokenizer.

use std::collections::HashMap;

use fancy_regex::Regex;

/// What a GGUF file's metadata must hold for a byte-level BPE tokenizer.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    /// Token strings in byte-level form, by id.
    pub tokens: Vec<String>,
    /// "left right" merges, highest priority first.
    pub merges: Vec<String>,
    /// Ids of the control tokens (matched whole in text, never produced by merges).
    pub special: Vec<u32>,
    pub eos: u32,
}

pub struct Tokenizer {
    ids: HashMap<String, u32>,
    tokens: Vec<String>,
    ranks: HashMap<(String, String), usize>,
    special: Vec<(String, u32)>,
    pieces: Regex,
    byte_char: [char; 256],
    char_byte: HashMap<char, u8>,
    eos: u32,
}

/// GPT-2's table: every byte as a printable character (printable ASCII and Latin-1 as
/// themselves, the rest shifted past 255).
fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).expect("a valid char");
            next += 1;
            c
        };
    }
    table
}

impl Tokenizer {
    pub fn new(v: Vocabulary) -> Result<Self, String> {
        let ids: HashMap<String, u32> = v
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut ranks = HashMap::with_capacity(v.merges.len());
        for (rank, m) in v.merges.iter().enumerate() {
            let (a, b) = m
                .split_once(' ')
                .ok_or_else(|| format!("merge {rank} is not two symbols: {m:?}"))?;
            ranks.insert((a.to_owned(), b.to_owned()), rank);
        }
        let mut special: Vec<(String, u32)> = v
            .special
            .iter()
            .filter_map(|&id| v.tokens.get(id as usize).map(|t| (t.clone(), id)))
            .filter(|(t, _)| !t.is_empty())
            .collect();
        // Longest first, so a special token that starts another is not matched in its place.
        special.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        let pieces =
            Regex::new(r"\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")
                .map_err(|e| e.to_string())?;
        let byte_char = byte_chars();
        let char_byte = byte_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        Ok(Self {
            ids,
            tokens: v.tokens,
            ranks,
            special,
            pieces,
            byte_char,
            char_byte,
            eos: v.eos,
        })
    }

    pub fn eos(&self) -> u32 {
        self.eos
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The id of a token string (a special token's text, or a byte-level symbol).
    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// Token ids of `text`, special tokens included where their text appears.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            // The earliest special token in what is left, if any.
            let next = self
                .special
                .iter()
                .filter_map(|(t, id)| rest.find(t.as_str()).map(|at| (at, t.len(), *id)))
                .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)));
            match next {
                Some((at, len, id)) => {
                    self.encode_ordinary(&rest[..at], &mut out);
                    out.push(id);
                    rest = &rest[at + len..];
                }
                None => {
                    self.encode_ordinary(rest, &mut out);
                    break;
                }
            }
        }
        out
    }

    fn encode_ordinary(&self, text: &str, out: &mut Vec<u32>) {
        for piece in self.pieces.find_iter(text).flatten() {
            let mapped: Vec<String> = piece
                .as_str()
                .bytes()
                .map(|b| self.byte_char[b as usize].to_string())
                .collect();
            for symbol in self.merge(mapped) {
                match self.ids.get(&symbol) {
                    Some(&id) => out.push(id),
                    // A symbol outside the vocabulary: its bytes one by one (every byte has
                    // a token in a byte-level vocabulary).
                    None => out.extend(symbol.chars().filter_map(|c| self.id(&c.to_string()))),
                }
            }
        }
    }

    /// Merges adjacent symbols, best-ranked pair first, until no pair has a merge.
    fn merge(&self, mut symbols: Vec<String>) -> Vec<String> {
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|&r| (r, i))
                })
                .min();
            let Some((_, i)) = best else {
                return symbols;
            };
            let right = symbols.remove(i + 1);
            symbols[i].push_str(&right);
        }
    }

    /// The bytes of one token (a special token's as its text).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(t) = self.tokens.get(id as usize) else {
            return Vec::new();
        };
        if self.special.iter().any(|(_, s)| *s == id) {
            return t.as_bytes().to_vec();
        }
        t.chars()
            .map(|c| self.char_byte.get(&c).copied().unwrap_or(b'?'))
            .collect()
    }

    /// The text of `ids` (invalid UTF-8, as from a cut in a character, shown as U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.token_bytes(id)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Whether `id` is a control token.
    pub fn is_special(&self, id: u32) -> bool {
        self.special.iter().any(|(_, s)| *s == id)
    }
}

/// Turns token bytes into text as they come, holding back an unfinished UTF-8 character.
#[derive(Default)]
pub struct TextStream {
    held: Vec<u8>,
}

impl TextStream {
    /// The text that `bytes` completes.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.held.extend_from_slice(bytes);
        match std::str::from_utf8(&self.held) {
            Ok(s) => {
                let s = s.to_owned();
                self.held.clear();
                s
            }
            Err(e) if e.error_len().is_none() => {
                // An unfinished character at the end: emit what comes before it.
                let valid = e.valid_up_to();
                let s = String::from_utf8_lossy(&self.held[..valid]).into_owned();
                self.held.drain(..valid);
                s
            }
            Err(_) => {
                let s = String::from_utf8_lossy(&self.held).into_owned();
                self.held.clear();
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: the 256 byte symbols, two merges, one special token.
    fn toy() -> Tokenizer {
        let chars = byte_chars();
        let mut tokens: Vec<String> = vec!["<|im_end|>".into()];
        tokens.extend(chars.iter().map(|c| c.to_string()));
        tokens.push("he".into());
        tokens.push("Ġhe".into());
        let merges = vec!["h e".into(), "Ġ he".into()];
        Tokenizer::new(Vocabulary {
            tokens,
            merges,
            special: vec![0],
            eos: 0,
        })
        .unwrap()
    }

    #[test]
    fn merges_apply_in_order_and_special_tokens_stay_whole() {
        let t = toy();
        let ids = t.encode("he he<|im_end|>h");
        let he = t.id("he").unwrap();
        let space_he = t.id("Ġhe").unwrap();
        assert_eq!(ids, vec![he, space_he, 0, t.id("h").unwrap()]);
        assert_eq!(t.decode(&ids), "he he<|im_end|>h");
    }

    #[test]
    fn any_text_round_trips_digits_alone() {
        let t = toy();
        for text in ["Ünïcödé ✓ 12345 tabs\tand\n\nnewlines  ", "", "a'sb 'll"] {
            assert_eq!(t.decode(&t.encode(text)), text);
        }
        // Each digit is a piece of its own.
        assert_eq!(t.encode("123").len(), 3);
    }

    #[test]
    fn a_character_cut_between_tokens_waits_for_its_end() {
        let mut s = TextStream::default();
        let bytes = "é".as_bytes();
        assert_eq!(s.push(&bytes[..1]), "");
        assert_eq!(s.push(&bytes[1..]), "é");
    }
}

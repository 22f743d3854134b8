//! A growable array kept in fixed-size chunks. Growing it never moves what it holds: a table
//! of large entries (an account's state is about 1.4 KB) grows without a moment when the old
//! and the new buffer are both held, and with at most one chunk of room to spare, where a
//! `Vec` doubles (at 100,000 accounts it held room for 131,072, and while doubling from 65,536
//! it held both: a peak 150 MB above what the accounts need).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const CHUNK_BITS: usize = 10;
const CHUNK: usize = 1 << CHUNK_BITS;
const MASK: usize = CHUNK - 1;

pub struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, value: T) {
        if self.len & MASK == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks
            .last_mut()
            .expect("a chunk with room was just ensured")
            .push(value);
        self.len += 1;
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> CHUNK_BITS][i & MASK]
    }
}

impl<T> IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> CHUNK_BITS][i & MASK]
    }
}

/// Saved as a plain sequence, exactly as a `Vec` of the same entries.
impl<T: Serialize> Serialize for Chunked<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The length up front: compact formats (postcard) write it before the entries.
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for value in self.iter() {
            seq.serialize_element(value)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Chunked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for Entries<T> {
            type Value = Chunked<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence")
            }

            // Entries go straight into chunks: a restore never holds them twice either.
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Chunked::default();
                while let Some(value) = seq.next_element()? {
                    out.push(value);
                }
                Ok(out)
            }
        }

        deserializer.deserialize_seq(Entries(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_across_chunks_and_saves_as_a_vec_would() {
        let mut c = Chunked::default();
        let n = 3 * CHUNK + 5;
        for i in 0..n {
            c.push(i as u64 * 3);
        }
        assert_eq!(c.len(), n);
        assert_eq!(c[CHUNK - 1], (CHUNK as u64 - 1) * 3);
        assert_eq!(c[CHUNK], CHUNK as u64 * 3);
        c[2 * CHUNK + 1] = 7;
        assert_eq!(c[2 * CHUNK + 1], 7);
        assert_eq!(c.iter().count(), n);
        let as_vec: Vec<u64> = c.iter().copied().collect();
        let bytes = postcard::to_stdvec(&c).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&as_vec).unwrap());
        let back: Chunked<u64> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.iter().copied().collect::<Vec<_>>(), as_vec);
    }
}

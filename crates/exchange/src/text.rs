//! Field types whose JSON comes in several shapes: message content, completion prompts and
//! `logit_bias` maps. Each deserialises straight into its simplest useful form without going
//! through `serde_json::Value`, because they sit on the hot path of every scan.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// Message text. Accepts a string, `null`, or an array of content parts (`{"type":"text","text":…}`
/// or bare strings); the text parts are joined with newlines and other parts (images, audio) dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content(pub String);

impl Content {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Self {
        Content(s.to_owned())
    }
}

impl From<String> for Content {
    fn from(s: String) -> Self {
        Content(s)
    }
}

impl Serialize for Content {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One element of a content-part array: its text, if it has any.
struct PartText(Option<String>);

impl<'de> Deserialize<'de> for PartText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PartText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a content part")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PartText, E> {
                Ok(PartText(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<PartText, E> {
                Ok(PartText(Some(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PartText, A::Error> {
                let mut text = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "text" {
                        text = map.next_value::<Option<String>>()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(PartText(text))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, null or an array of content parts")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Content, E> {
                Ok(Content::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Content, E> {
                Ok(Content::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut out = String::new();
                while let Some(PartText(part)) = seq.next_element()? {
                    if let Some(t) = part {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(&t);
                    }
                }
                Ok(Content(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A completions prompt or embeddings input: text (one or several strings) and/or token
/// arrays; or the Responses API's `input`, which may also be a list of items (messages, tool
/// calls and their results), kept in `items`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompt {
    pub texts: Vec<String>,
    /// How many tokens were sent as raw token ids rather than text.
    pub token_ids: usize,
    /// Responses API input items, in order (the texts above are then user messages).
    pub items: Vec<Item>,
}

/// One item of a Responses API `input` or `output` list (one schema for both): a message
/// (`role`, and `content` as text parts), reasoning (its `summary` parts), a tool call (`type:
/// function_call`, `name`, `arguments`, `call_id`) or a tool's result (`type:
/// function_call_output`, `output`). Other item types keep their type only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub content: Content,
    #[serde(default)]
    pub summary: Content,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
}

impl Prompt {
    pub fn text(s: impl Into<String>) -> Self {
        Prompt {
            texts: vec![s.into()],
            ..Prompt::default()
        }
    }

    /// The first text, the part that carries the instruction in practice.
    pub fn first_text(&self) -> &str {
        self.texts.first().map_or("", String::as_str)
    }
}

impl Serialize for Prompt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.items.is_empty() {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(Some(self.texts.len() + self.items.len()))?;
            for t in &self.texts {
                seq.serialize_element(t)?;
            }
            for i in &self.items {
                seq.serialize_element(i)?;
            }
            return seq.end();
        }
        if self.texts.len() == 1 {
            s.serialize_str(&self.texts[0])
        } else {
            self.texts.serialize(s)
        }
    }
}

/// One element of a prompt array: a string, a token id, an array of token ids, or a
/// Responses API input item.
enum PromptItem {
    Text(String),
    Tokens(usize),
    Item(Item),
}

impl<'de> Deserialize<'de> for PromptItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PromptItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a token id or an array of token ids")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PromptItem, E> {
                Ok(PromptItem::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<PromptItem, E> {
                Ok(PromptItem::Text(v))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<PromptItem, E> {
                Ok(PromptItem::Tokens(1))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<PromptItem, E> {
                Ok(PromptItem::Tokens(1))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PromptItem, A::Error> {
                let mut n = 0;
                while seq.next_element::<u64>()?.is_some() {
                    n += 1;
                }
                Ok(PromptItem::Tokens(n))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PromptItem, A::Error> {
                Item::deserialize(de::value::MapAccessDeserializer::new(map)).map(PromptItem::Item)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Prompt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Prompt;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings or token ids")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Prompt, E> {
                Ok(Prompt::text(v))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Prompt, E> {
                Ok(Prompt::text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Prompt, A::Error> {
                let mut p = Prompt::default();
                while let Some(item) = seq.next_element::<PromptItem>()? {
                    match item {
                        PromptItem::Text(t) => p.texts.push(t),
                        PromptItem::Tokens(n) => p.token_ids += n,
                        PromptItem::Item(i) => p.items.push(i),
                    }
                }
                Ok(p)
            }
        }
        d.deserialize_any(V)
    }
}

/// `logit_bias`: token id (as the JSON key) to bias.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogitBias(pub Vec<(String, f64)>);

impl Serialize for LogitBias {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for LogitBias {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LogitBias;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of token id to bias")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LogitBias, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, f64>()? {
                    out.push((k, v));
                }
                Ok(LogitBias(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_accepts_every_shape() {
        let s: Content = serde_json::from_str(r#""hi""#).unwrap();
        assert_eq!(s.as_str(), "hi");
        let n: Content = serde_json::from_str("null").unwrap();
        assert_eq!(n.as_str(), "");
        let parts: Content = serde_json::from_str(
            r#"[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]"#,
        )
        .unwrap();
        assert_eq!(parts.as_str(), "a\nb");
        assert!(serde_json::from_str::<Content>("12").is_err());
    }

    #[test]
    fn prompt_accepts_strings_and_tokens() {
        let p: Prompt = serde_json::from_str(r#"["a", "b"]"#).unwrap();
        assert_eq!(p.texts, vec!["a", "b"]);
        let t: Prompt = serde_json::from_str("[[1,2,3],[4]]").unwrap();
        assert_eq!(t.token_ids, 4);
        let flat: Prompt = serde_json::from_str("[1,2,3]").unwrap();
        assert_eq!(flat.token_ids, 3);
    }

    #[test]
    fn logit_bias_keeps_entries() {
        let b: LogitBias = serde_json::from_str(r#"{"50256": -100, "13": 5.5}"#).unwrap();
        assert_eq!(
            b.0,
            vec![("50256".to_owned(), -100.0), ("13".to_owned(), 5.5)]
        );
    }
}

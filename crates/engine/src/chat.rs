//! The chat template of SmolLM2's instruct model (ChatML): each message between
//! `<|im_start|>ROLE\n` and `<|im_end|>\n`, a default system message when none is given, and
//! the assistant's turn opened for the answer.

/// The system message SmolLM2 was trained with, used when the request has none.
pub const DEFAULT_SYSTEM: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// The prompt text for `messages` (role, content), ready for the tokenizer.
pub fn prompt(messages: &[(String, String)]) -> String {
    let mut out = String::new();
    if messages.first().is_none_or(|(role, _)| role != "system") {
        out.push_str(&format!("<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"));
    }
    for (role, content) in messages {
        out.push_str(&format!("<|im_start|>{role}\n{content}<|im_end|>\n"));
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_opens_the_assistants_turn() {
        let p = prompt(&[("user".into(), "Hi".into())]);
        assert!(p.starts_with("<|im_start|>system\nYou are a helpful"));
        assert!(p.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
        let own = prompt(&[("system".into(), "Be brief.".into())]);
        assert!(own.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"));
    }
}

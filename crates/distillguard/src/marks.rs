//! Testing our marks on text: what the evidence commands (`evidence detect`, `probe`,
//! `similarity`) share: the engine's tokenizer, a key test or several, and the answers we
//! served as our exchange log holds them (the prompts a similarity test replays, the windows a
//! radioactivity test keeps).

use std::collections::HashSet;

use anyhow::Context;

/// The engine's tokenizer, read from the model file: text as the tokens the engine marked.
pub type Tokenize = Box<dyn Fn(&str) -> Vec<u32>>;

#[cfg(feature = "engine")]
pub fn tokenizer(model: &std::path::Path) -> anyhow::Result<Tokenize> {
    let t = engine::load_tokenizer(model).map_err(anyhow::Error::msg)?;
    Ok(Box::new(move |text| t.encode(text)))
}

#[cfg(not(feature = "engine"))]
pub fn tokenizer(_: &std::path::Path) -> anyhow::Result<Tokenize> {
    anyhow::bail!(crate::cmd::engine::not_built())
}

/// The master secret and how answers were marked: what a key test needs besides the text.
pub type Mark<'a> = (&'a watermark::Master, watermark::Scheme, usize);

/// `name`'s key tested on `tokens` (the name of no account gives a control key), within
/// `windows` when given.
pub fn detection(
    (master, scheme, context): Mark,
    name: &str,
    tokens: &[u32],
    min_tokens: usize,
    windows: Option<&watermark::Windows>,
) -> anyhow::Result<watermark::Detection> {
    let wm = watermark::Watermark::new(master.key_for(name), scheme, context)
        .map_err(anyhow::Error::msg)?;
    Ok(match windows {
        Some(w) => watermark::detect_within(&wm, tokens, min_tokens, w),
        None => watermark::detect(&wm, tokens, min_tokens),
    })
}

/// Each of `accounts`' keys tested on `tokens`, each judged at `alpha / accounts`
/// (Bonferroni; [`watermark::test_keys`]): the detections as JSON with `account` and
/// `marked`, in the order given, and the accounts whose mark was found. With `windows`, only
/// the positions after a window of what we served are scored ([`watermark::Windows`]).
pub fn test_keys(
    (master, scheme, context): Mark,
    accounts: &[String],
    tokens: &[u32],
    (min_tokens, alpha): (usize, f64),
    windows: Option<&watermark::Windows>,
) -> anyhow::Result<(Vec<serde_json::Value>, Vec<String>)> {
    let tests = watermark::test_keys(
        master,
        (scheme, context),
        accounts,
        tokens,
        min_tokens,
        alpha,
        windows,
    )?;
    let found = tests
        .iter()
        .filter(|t| t.marked)
        .map(|t| t.account.clone())
        .collect();
    let results = tests
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    Ok((results, found))
}

/// Calls `each` with every successful exchange of `accounts` in `log` (log order) and the
/// answer we served to it, until it returns false. Exchanges logged with content off keep a
/// digest, not the answer, and are skipped; so are unreadable lines.
fn each_answer(
    log: &std::path::Path,
    accounts: &[String],
    mut each: impl FnMut(&exchange::Exchange, String) -> bool,
) -> anyhow::Result<()> {
    let wanted: HashSet<&str> = accounts.iter().map(String::as_str).collect();
    let mut source = exchange::LineSource::open(log, exchange::ReaderOptions::default())
        .with_context(|| format!("opening {}", log.display()))?;
    while let Some(line) = source.next_line() {
        let Ok(exchange::RawLine::Line { bytes, .. }) = line else {
            continue;
        };
        let Ok(ex) = exchange::parse_line(&bytes) else {
            continue;
        };
        if !wanted.contains(ex.account.as_str()) || ex.status >= 400 {
            continue;
        }
        let answer = ex
            .response
            .as_ref()
            .and_then(|r| r.choices.first())
            .and_then(|c| c.message.as_ref())
            .map(|m| m.content.as_str().to_owned())
            .unwrap_or_default();
        if answer.is_empty() || answer.starts_with("sha256:") {
            continue;
        }
        if !each(&ex, answer) {
            break;
        }
    }
    Ok(())
}

/// Distinct single-turn prompts of `accounts` with the answer we served, in log order, at
/// most `limit`.
pub fn served(
    log: &std::path::Path,
    accounts: &[String],
    limit: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    each_answer(log, accounts, |ex, answer| {
        if let Some([m]) = ex.request.messages.as_deref() {
            let prompt = m.content.as_str();
            // Content off keeps a digest in place of the text: nothing to replay.
            if m.role == "user" && !prompt.starts_with("sha256:") && seen.insert(prompt.to_owned())
            {
                out.push((prompt.to_owned(), answer));
            }
        }
        out.len() < limit
    })?;
    Ok(out)
}

/// The watermark windows of the answers served to `accounts` (content on), through the
/// engine's tokenizer: what a radioactivity test keeps ([`watermark::Windows`]), with how many
/// answers they came from. With `ratio` above 0, only the windows our answers use at least
/// `ratio` times as often as the `reference` texts (public text) do.
pub fn served_windows(
    log: &std::path::Path,
    accounts: &[String],
    tokenize: &Tokenize,
    (reference, ratio): (&[String], f64),
) -> anyhow::Result<(watermark::Windows, usize)> {
    let mut answers = Vec::new();
    each_answer(log, accounts, |_, answer| {
        answers.push(tokenize(&answer));
        true
    })?;
    let ours = answers.iter().map(Vec::as_slice);
    let windows = if ratio > 0.0 {
        let public: Vec<Vec<u32>> = reference.iter().map(|t| tokenize(t)).collect();
        watermark::Windows::over_represented(ours, public.iter().map(Vec::as_slice), ratio)
    } else {
        watermark::Windows::of(ours, None)
    };
    Ok((windows, answers.len()))
}

/// A digest a report names its data by, so a stranger can check they hold the same.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    Ok(sha256_hex(&std::fs::read(path)?))
}

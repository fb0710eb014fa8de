//! The request bodies of the OpenAI API (and llama-server's and our
//! extensions), checked and turned into what the engine runs; the error
//! object OpenAI clients expect.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::args::Args;

/// Most `top_logprobs` a request may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// An error answered as OpenAI does: `{"error": {"message", "type",
/// "param", "code"}}` with an HTTP status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: the request is malformed or a value is out of range.
    pub fn invalid(param: Option<&'static str>, message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into(), param, code: None }
    }

    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE => "server_error",
            StatusCode::NOT_FOUND => "not_found_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind(), "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.to_json())).into_response()
    }
}

/// A string or a list of strings (`stop`, `prompt`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// `logprobs`: a boolean in chat completions, a count in completions.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Logprobs {
    Flag(bool),
    Count(i64),
}

/// `sampler`: a family name, or an object with `name` and the family's
/// parameters (the C field names).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SamplerField {
    Name(String),
    WithParams(Map<String, Value>),
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// One chat message. `content` is a string or a list of `{"type": "text",
/// "text": ...}` parts.
#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Value,
}

/// The body of `/v1/chat/completions` and `/v1/completions`. Fields the
/// server does not use (`user`, `tools`, ...) are ignored, as OpenAI-
/// compatible servers do.
#[derive(Debug, Deserialize)]
pub struct Body {
    pub model: Option<String>,
    pub messages: Option<Vec<Message>>,
    pub prompt: Option<OneOrMany>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub n_predict: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: Option<i64>,
    pub stop: Option<OneOrMany>,
    pub logit_bias: Option<HashMap<String, f64>>,
    pub logprobs: Option<Logprobs>,
    pub top_logprobs: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub n: Option<i64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    // llama-server's extensions.
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub typical_p: Option<f64>,
    pub repeat_penalty: Option<f64>,
    pub repeat_last_n: Option<i64>,
    pub mirostat: Option<i64>,
    pub mirostat_tau: Option<f64>,
    pub mirostat_eta: Option<f64>,
    pub dry_multiplier: Option<f64>,
    pub dry_base: Option<f64>,
    pub dry_allowed_length: Option<i64>,
    pub dry_penalty_last_n: Option<i64>,
    pub ignore_eos: Option<bool>,
    // Ours.
    pub sampler: Option<SamplerField>,
    pub sampler_params: Option<Map<String, Value>>,
    #[serde(default)]
    pub telemetry: bool,
}

/// Which endpoint a body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

/// What the engine needs to run a request, checked.
#[derive(Debug)]
pub struct Plan {
    /// The chat messages or the prompt text.
    pub input: Input,
    /// The CLI flags the chain is built from (the server's, with the
    /// request's sampling fields written over them).
    pub args: Args,
    /// Most tokens to generate; `None`: until end of generation or the
    /// slot's context is full.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    /// `Some(k)`: report each token's log-probability and the `k` most
    /// likely alternatives.
    pub logprobs: Option<usize>,
    pub logit_bias: Vec<(i32, f32)>,
    pub ignore_eos: bool,
    pub telemetry: bool,
    pub stream: bool,
    pub include_usage: bool,
}

#[derive(Debug)]
pub enum Input {
    Chat(Vec<(String, String)>),
    Text(String),
}

fn finite(param: &'static str, v: Option<f64>, ok: impl Fn(f64) -> bool, range: &str) -> Result<Option<f32>, ApiError> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && ok(x) => Ok(Some(x as f32)),
        Some(x) => Err(ApiError::invalid(Some(param), format!("`{param}` must be {range}, not {x}"))),
    }
}

fn int(param: &'static str, v: Option<i64>, lo: i64, hi: i64) -> Result<Option<i32>, ApiError> {
    match v {
        None => Ok(None),
        Some(x) if (lo..=hi).contains(&x) => Ok(Some(x as i32)),
        Some(x) => Err(ApiError::invalid(Some(param), format!("`{param}` must be in {lo}..={hi}, not {x}"))),
    }
}

/// The text of a message's `content`.
fn content_text(content: &Value) -> Result<String, ApiError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => return Err(ApiError::invalid(Some("messages"), "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported")),
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::invalid(Some("messages"), "`content` must be a string or a list of text parts")),
    }
}

/// Checks `body` and makes the plan. `base` holds the server's flags.
pub fn plan(body: Body, endpoint: Endpoint, base: &Args) -> Result<Plan, ApiError> {
    let input = match endpoint {
        Endpoint::Chat => {
            let messages = body.messages.ok_or_else(|| ApiError::invalid(Some("messages"), "`messages` is required"))?;
            if messages.is_empty() {
                return Err(ApiError::invalid(Some("messages"), "`messages` must not be empty"));
            }
            let mut out = Vec::with_capacity(messages.len());
            for m in messages {
                out.push((m.role, content_text(&m.content)?));
            }
            Input::Chat(out)
        }
        Endpoint::Completion => {
            let mut prompts = body.prompt.ok_or_else(|| ApiError::invalid(Some("prompt"), "`prompt` is required"))?.into_vec();
            if prompts.len() != 1 {
                return Err(ApiError::invalid(Some("prompt"), "`prompt` must be one string (batches of prompts are not supported)"));
            }
            Input::Text(prompts.remove(0))
        }
    };
    if let Some(n) = body.n {
        if n != 1 {
            return Err(ApiError::invalid(Some("n"), format!("`n` must be 1 (one choice per request), not {n}")));
        }
    }
    let max = body.max_completion_tokens.or(body.max_tokens).or(body.n_predict.filter(|&n| n >= 0));
    let max_tokens = match max {
        None => None,
        Some(n) if n >= 1 => Some(n as usize),
        Some(n) => return Err(ApiError::invalid(Some("max_tokens"), format!("`max_tokens` must be at least 1, not {n}"))),
    };
    let logprobs = match (endpoint, body.logprobs) {
        (_, None) | (_, Some(Logprobs::Flag(false))) => None,
        (Endpoint::Chat, Some(Logprobs::Flag(true))) => Some(int("top_logprobs", body.top_logprobs, 0, MAX_TOP_LOGPROBS as i64)?.unwrap_or(0) as usize),
        (Endpoint::Completion, Some(Logprobs::Count(k))) => Some(int("logprobs", Some(k), 0, MAX_TOP_LOGPROBS as i64)?.unwrap_or(0) as usize),
        (Endpoint::Chat, Some(Logprobs::Count(_))) => {
            return Err(ApiError::invalid(Some("logprobs"), "`logprobs` is a boolean here; the count goes in `top_logprobs`"))
        }
        (Endpoint::Completion, Some(Logprobs::Flag(true))) => Some(0),
    };
    if body.top_logprobs.is_some() && endpoint == Endpoint::Chat && logprobs.is_none() {
        return Err(ApiError::invalid(Some("top_logprobs"), "`top_logprobs` needs `logprobs: true`"));
    }
    let mut logit_bias = Vec::new();
    for (k, v) in body.logit_bias.unwrap_or_default() {
        let id: i32 = k.trim().parse().map_err(|_| ApiError::invalid(Some("logit_bias"), format!("`logit_bias` keys are token ids, not {k:?}")))?;
        if !(v.is_finite() && (-100.0..=100.0).contains(&v)) {
            return Err(ApiError::invalid(Some("logit_bias"), format!("`logit_bias` values must be in -100..=100, not {v}")));
        }
        logit_bias.push((id, v as f32));
    }

    let mut args = base.clone();
    args.quiet = true;
    args.no_lookahead = true;
    args.sampler_params.clear();
    let s = &mut args.sampling;
    if let Some(t) = finite("temperature", body.temperature, |x| x >= 0.0, "a number >= 0")? {
        s.temp = t;
    }
    if let Some(p) = finite("top_p", body.top_p, |x| x > 0.0 && x <= 1.0, "in (0, 1]")? {
        s.top_p = p;
    }
    if let Some(p) = finite("min_p", body.min_p, |x| (0.0..=1.0).contains(&x), "in [0, 1]")? {
        s.min_p = p;
    }
    if let Some(p) = finite("typical_p", body.typical_p, |x| x > 0.0 && x <= 1.0, "in (0, 1]")? {
        s.typical = p;
    }
    if let Some(k) = int("top_k", body.top_k, i32::MIN as i64, i32::MAX as i64)? {
        s.top_k = k;
    }
    if let Some(p) = finite("presence_penalty", body.presence_penalty, |x| (-2.0..=2.0).contains(&x), "in [-2, 2]")? {
        s.presence_penalty = p;
    }
    if let Some(p) = finite("frequency_penalty", body.frequency_penalty, |x| (-2.0..=2.0).contains(&x), "in [-2, 2]")? {
        s.frequency_penalty = p;
    }
    if let Some(p) = finite("repeat_penalty", body.repeat_penalty, |x| x > 0.0, "a number > 0")? {
        s.repeat_penalty = p;
    }
    if let Some(n) = int("repeat_last_n", body.repeat_last_n, -1, i32::MAX as i64)? {
        s.repeat_last_n = n;
    }
    if let Some(m) = int("mirostat", body.mirostat, 0, 2)? {
        s.mirostat = m as u8;
    }
    if let Some(t) = finite("mirostat_tau", body.mirostat_tau, |x| x > 0.0, "a number > 0")? {
        s.mirostat_ent = t;
    }
    if let Some(e) = finite("mirostat_eta", body.mirostat_eta, |x| x > 0.0, "a number > 0")? {
        s.mirostat_lr = e;
    }
    if let Some(m) = finite("dry_multiplier", body.dry_multiplier, |x| x >= 0.0, "a number >= 0")? {
        s.dry_multiplier = Some(m);
    }
    if let Some(b) = finite("dry_base", body.dry_base, |x| x >= 1.0, "a number >= 1")? {
        s.dry_base = b;
    }
    if let Some(n) = int("dry_allowed_length", body.dry_allowed_length, 0, i32::MAX as i64)? {
        s.dry_allowed_length = Some(n);
    }
    if let Some(n) = int("dry_penalty_last_n", body.dry_penalty_last_n, -1, i32::MAX as i64)? {
        s.dry_penalty_last_n = n;
    }
    match body.seed {
        None | Some(-1) => {}
        Some(x) if (0..=u32::MAX as i64).contains(&x) => args.seed = x as u32,
        Some(x) => return Err(ApiError::invalid(Some("seed"), format!("`seed` must be in 0..=4294967295 (or -1: random), not {x}"))),
    }
    let mut params = body.sampler_params.unwrap_or_default();
    match body.sampler {
        None => args.sampler = "classic".into(),
        Some(SamplerField::Name(name)) => args.sampler = name,
        Some(SamplerField::WithParams(mut obj)) => {
            let name = obj.remove("name").or_else(|| obj.remove("type"));
            args.sampler = name
                .as_ref()
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::invalid(Some("sampler"), "`sampler` as an object needs a string `name`"))?
                .to_string();
            params.extend(obj);
        }
    }
    if !crate::chain_builder::FAMILIES.contains(&args.sampler.as_str()) {
        return Err(ApiError::invalid(Some("sampler"), format!("unknown sampler `{}` (known: {})", args.sampler, crate::chain_builder::FAMILIES.join(", "))));
    }
    if params.get("lookahead").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::invalid(
            Some("sampler"),
            "the AlphaSampler's lookahead needs spare sequences of the context; `serve` runs it without (lookahead: false)",
        ));
    }
    params.remove("lookahead");
    if args.sampler == "classic" && !params.is_empty() {
        return Err(ApiError::invalid(Some("sampler_params"), "the classic chain takes its parameters as top-level fields (temperature, top_k, ...)"));
    }
    args.sampler_params = params.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let ignore_eos = body.ignore_eos.unwrap_or(false);
    Ok(Plan {
        input,
        args,
        max_tokens,
        stop: body.stop.map(OneOrMany::into_vec).unwrap_or_default(),
        logprobs,
        logit_bias,
        ignore_eos,
        telemetry: body.telemetry,
        stream: body.stream,
        include_usage: body.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn base() -> Args {
        Args::try_parse_from(["cli"]).unwrap()
    }

    fn chat(extra: Value) -> Result<Plan, ApiError> {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        plan(serde_json::from_value(body).unwrap(), Endpoint::Chat, &base())
    }

    #[test]
    fn sampling_fields_reach_the_chain_flags() {
        let p = chat(json!({"temperature": 0.3, "top_p": 0.9, "top_k": 12, "min_p": 0.2, "seed": 5, "repeat_penalty": 1.1, "dry_multiplier": 0.8})).unwrap();
        let s = &p.args.sampling;
        assert_eq!((s.temp, s.top_p, s.top_k, s.min_p, s.repeat_penalty, s.dry_multiplier), (0.3, 0.9, 12, 0.2, 1.1, Some(0.8)));
        assert_eq!(p.args.seed, 5);
        assert_eq!(p.args.sampler, "classic");
    }

    #[test]
    fn a_sampler_object_carries_its_parameters() {
        let p = chat(json!({"sampler": {"name": "entropix", "temp": 0.5}, "telemetry": true})).unwrap();
        assert_eq!(p.args.sampler, "entropix");
        assert_eq!(p.args.sampler_params, vec!["temp=0.5".to_string()]);
        assert!(p.telemetry);
    }

    #[test]
    fn out_of_range_values_are_400_with_the_field_named() {
        for (extra, param) in [
            (json!({"max_tokens": -3}), "max_tokens"),
            (json!({"temperature": -1.0}), "temperature"),
            (json!({"top_p": 0.0}), "top_p"),
            (json!({"n": 2}), "n"),
            (json!({"seed": -5}), "seed"),
            (json!({"sampler": "nucleus"}), "sampler"),
            (json!({"logit_bias": {"12": 500}}), "logit_bias"),
            (json!({"logprobs": true, "top_logprobs": 21}), "top_logprobs"),
        ] {
            let e = chat(extra.clone()).expect_err(&extra.to_string());
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.param, Some(param), "{extra}");
        }
    }

    #[test]
    fn content_parts_are_joined() {
        let p = chat(json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]})).unwrap();
        match p.input {
            Input::Chat(m) => assert_eq!(m, vec![("user".to_string(), "ab".to_string())]),
            Input::Text(_) => panic!("chat input expected"),
        }
    }
}

//! Hugging Face chat templates (the Jinja `chat_template` of `tokenizer_config.json`) on minijinja.
//!
//! Mirrors what `transformers`' `apply_chat_template` sets up: `trim_blocks` and `lstrip_blocks`,
//! lenient undefined values, Python string methods, the globals `raise_exception` and
//! `strftime_now`, and a `tojson` filter that writes what Python's `json.dumps` writes (the builtin
//! minijinja one is compact and HTML-escapes `<>&'`, which would change prompts). The context is
//! `messages`, `add_generation_prompt`, `bos_token`, `eos_token` and, when pinned, `date_string`.

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

mod pyjson;
use pyjson::tojson;

/// The name the template is registered under; errors say "chat_template line N".
const TEMPLATE_NAME: &str = "chat_template";

/// One turn of a conversation, as in the OpenAI and HF chat APIs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// The special tokens a template may print (`{{ bos_token }}`); `None` leaves them undefined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

/// Per-call rendering options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// End the prompt with the header of an assistant turn (what generation needs).
    pub add_generation_prompt: bool,
    /// Pins `date_string` (e.g. "26 Jul 2024") so prompts are byte-stable across runs; when `None`
    /// the template picks its own default (Llama 3.2-style templates call `strftime_now`).
    pub date_string: Option<String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            add_generation_prompt: true,
            date_string: None,
        }
    }
}

/// A chat template compiled once, rendered per request.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    special: SpecialTokens,
}

impl ChatTemplate {
    /// Compiles `source`; a syntax error is an `EngineError::Template` naming the line.
    pub fn new(source: &str, special: SpecialTokens) -> Result<Self> {
        let mut env = Environment::new();
        // As in transformers' `_compile_jinja_template`.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(|e| EngineError::Template(describe(&e)))?;
        Ok(Self { env, special })
    }

    /// Renders a conversation of plain role/content messages.
    pub fn render(&self, messages: &[ChatMessage], options: &RenderOptions) -> Result<String> {
        self.render_with(messages, options)
    }

    /// Renders messages of any serializable shape (e.g. OpenAI messages with `tool_calls`).
    pub fn render_with<M: Serialize>(
        &self,
        messages: &[M],
        options: &RenderOptions,
    ) -> Result<String> {
        let mut ctx: BTreeMap<&str, Value> = BTreeMap::new();
        ctx.insert("messages", Value::from_serialize(messages));
        ctx.insert(
            "add_generation_prompt",
            Value::from(options.add_generation_prompt),
        );
        // Absent rather than none: templates test `bos_token is defined`.
        if let Some(bos) = &self.special.bos_token {
            ctx.insert("bos_token", Value::from(bos.as_str()));
        }
        if let Some(eos) = &self.special.eos_token {
            ctx.insert("eos_token", Value::from(eos.as_str()));
        }
        if let Some(date) = &options.date_string {
            ctx.insert("date_string", Value::from(date.as_str()));
        }
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| EngineError::Template(describe(&e)))?;
        template
            .render(ctx)
            .map_err(|e| EngineError::Template(describe(&e)))
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }
}

/// "kind: detail (chat_template line N): cause..." from a minijinja error and its sources.
fn describe(err: &Error) -> String {
    let mut msg = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    if let Some(line) = err.line() {
        msg.push_str(&format!(" ({TEMPLATE_NAME} line {line})"));
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        msg.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    msg
}

/// `raise_exception(msg)`: how HF templates reject a conversation.
fn raise_exception(message: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(fmt)`: local time, as transformers registers it.
fn strftime_now(format: String) -> std::result::Result<String, Error> {
    use std::fmt::Write as _;
    let mut out = String::new();
    // `write!` rather than `to_string()`: chrono reports a bad format as fmt::Error, and
    // `to_string()` would turn that into a panic.
    write!(out, "{}", chrono::Local::now().format(&format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format {format:?}"),
        )
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template (shared/reference/smollm2/README.md).
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    /// The `chat_template` of meta-llama/Llama-3.3-70B-Instruct's tokenizer_config.json (identical
    /// to Llama-3.1-8B-Instruct's), as vendored by llama.cpp in
    /// models/templates/meta-llama-Llama-3.3-70B-Instruct.jinja; checked byte for byte against
    /// the JSON-escaped `chat_template` string of a Llama 3.1 tokenizer_config.json.
    const LLAMA33: &str = include_str!("../../tests/fixtures/llama-3.3-chat-template.jinja");

    fn llama33() -> ChatTemplate {
        let special = SpecialTokens {
            bos_token: Some("<|begin_of_text|>".into()),
            eos_token: Some("<|eot_id|>".into()),
        };
        ChatTemplate::new(LLAMA33, special).unwrap()
    }

    fn pinned() -> RenderOptions {
        RenderOptions {
            date_string: Some("26 Jul 2024".into()),
            ..RenderOptions::default()
        }
    }

    fn smollm2() -> ChatTemplate {
        ChatTemplate::new(SMOLLM2, SpecialTokens::default()).unwrap()
    }

    #[test]
    fn chatml_inserts_default_system_prompt() {
        let messages = [ChatMessage::new("user", "What is 2+2?")];
        let text = smollm2()
            .render(&messages, &RenderOptions::default())
            .unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
             Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn chatml_keeps_given_system_prompt() {
        let messages = [
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "What is 2+2?"),
        ];
        let options = RenderOptions {
            add_generation_prompt: false,
            ..RenderOptions::default()
        };
        let text = smollm2().render(&messages, &options).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        );
    }

    #[test]
    fn llama33_system_and_user_with_pinned_date() {
        let messages = [
            ChatMessage::new("system", "You are a concise assistant.\n"),
            ChatMessage::new("user", "  What is the capital of France?  "),
        ];
        let text = llama33().render(&messages, &pinned()).unwrap();
        assert_eq!(
            text,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
             Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n\
             You are a concise assistant.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\n\
             What is the capital of France?<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn llama33_multi_turn_without_system_still_has_date_header() {
        let messages = [
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello!"),
            ChatMessage::new("user", "2+2?"),
        ];
        let options = RenderOptions {
            add_generation_prompt: false,
            date_string: Some("01 Jan 2025".into()),
        };
        let text = llama33().render(&messages, &options).unwrap();
        assert_eq!(
            text,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
             Cutting Knowledge Date: December 2023\nToday Date: 01 Jan 2025\n\n<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
        );
    }

    #[test]
    fn llama33_unpinned_date_is_the_templates_own_default() {
        // Llama 3.1/3.3 default `date_string` to "26 Jul 2024" without consulting strftime_now
        // (only the Llama 3.2 template does), so HF renders this exact text too.
        let messages = [ChatMessage::new("user", "Hi")];
        let text = llama33()
            .render(&messages, &RenderOptions::default())
            .unwrap();
        assert!(text.contains("\nToday Date: 26 Jul 2024\n\n"), "{text}");
    }

    #[test]
    fn strftime_now_gives_todays_date_when_unpinned() {
        // The date block of Llama 3.2's template.
        let source = "{%- if not date_string is defined %}\n    {%- if strftime_now is defined %}\n        {%- set date_string = strftime_now(\"%d %b %Y\") %}\n    {%- else %}\n        {%- set date_string = \"26 Jul 2024\" %}\n    {%- endif %}\n{%- endif %}\n{{- \"Today Date: \" + date_string }}";
        let template = ChatTemplate::new(source, SpecialTokens::default()).unwrap();
        let before = chrono::Local::now().format("%d %b %Y").to_string();
        let text = template
            .render(&[] as &[ChatMessage], &RenderOptions::default())
            .unwrap();
        let after = chrono::Local::now().format("%d %b %Y").to_string();
        assert!(
            text == format!("Today Date: {before}") || text == format!("Today Date: {after}"),
            "{text}"
        );
        let text = template.render(&[] as &[ChatMessage], &pinned()).unwrap();
        assert_eq!(text, "Today Date: 26 Jul 2024");
    }

    #[test]
    fn llama33_two_tool_calls_raise_the_templates_exception() {
        let messages = serde_json::json!([
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "tool_calls": [
                {"type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}},
                {"type": "function", "function": {"name": "weather", "arguments": {"city": "Rome"}}}
            ]}
        ]);
        let messages = messages.as_array().unwrap();
        let err = llama33().render_with(messages, &pinned()).unwrap_err();
        assert!(matches!(err, EngineError::Template(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("This model only supports single tool-calls at once!"),
            "{text}"
        );
        assert!(text.contains("chat_template line"), "{text}");
    }

    #[test]
    fn llama33_single_tool_call_and_result_match_hf() {
        let messages = serde_json::json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [
                {"type": "function", "function": {"name": "weather", "arguments": {"city": "Paris", "unit": "C"}}}
            ]},
            {"role": "tool", "content": "21"}
        ]);
        let text = llama33()
            .render_with(messages.as_array().unwrap(), &pinned())
            .unwrap();
        let tail = "<|start_header_id|>assistant<|end_header_id|>\n\n\
                    {\"name\": \"weather\", \"parameters\": {\"city\": \"Paris\", \"unit\": \"C\"}}<|eot_id|>\
                    <|start_header_id|>ipython<|end_header_id|>\n\n\"21\"<|eot_id|>\
                    <|start_header_id|>assistant<|end_header_id|>\n\n";
        assert!(text.ends_with(tail), "{text}");
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let source = "{{ x | tojson }}|{{ x | tojson(indent=4) }}|{{ [] | tojson(indent=2) }}|{{ s | tojson }}|{{ s | tojson(ensure_ascii=true) }}";
        let env_template = ChatTemplate::new(source, SpecialTokens::default()).unwrap();
        let template = env_template.env.get_template(TEMPLATE_NAME).unwrap();
        let text = template
            .render(minijinja::context! {
                x => serde_json::json!({"a": [1, {"b": null}], "c": "it's <ok> & \"quoted\"\n"}),
                s => "héllo 🦙",
            })
            .unwrap();
        assert_eq!(
            text,
            "{\"a\": [1, {\"b\": null}], \"c\": \"it's <ok> & \\\"quoted\\\"\\n\"}|\
             {\n    \"a\": [\n        1,\n        {\n            \"b\": null\n        }\n    ],\n    \
             \"c\": \"it's <ok> & \\\"quoted\\\"\\n\"\n}|[]|\"héllo 🦙\"|\"h\\u00e9llo \\ud83e\\udd99\""
        );
    }

    #[test]
    fn python_string_methods_work() {
        let source = "{{ messages[0].content.strip().upper() }}{% if messages[0].content.startswith(' a') %}!{% endif %}";
        let template = ChatTemplate::new(source, SpecialTokens::default()).unwrap();
        let text = template
            .render(
                &[ChatMessage::new("user", " abc ")],
                &RenderOptions::default(),
            )
            .unwrap();
        assert_eq!(text, "ABC!");
    }

    #[test]
    fn syntax_error_is_an_error_naming_the_line() {
        let err = ChatTemplate::new(
            "ok\n{% for m in messages %}\n{{ m.content",
            SpecialTokens::default(),
        )
        .unwrap_err();
        assert!(matches!(err, EngineError::Template(_)), "{err:?}");
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn bad_strftime_format_is_an_error_not_a_panic() {
        let template =
            ChatTemplate::new("{{ strftime_now('%Q%') }}", SpecialTokens::default()).unwrap();
        let err = template
            .render(&[] as &[ChatMessage], &RenderOptions::default())
            .unwrap_err();
        assert!(err.to_string().contains("strftime_now"), "{err}");
    }
}

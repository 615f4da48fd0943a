//! `engine serve` against a client no one here wrote: the official OpenAI Python SDK (pinned, in
//! a virtualenv this test makes and then reuses) does chat and completions, streamed and not, on
//! SmolLM2. The greedy chat answer to "What is 2+2?" must be `engine generate --chat`'s, `usage`
//! must count the same token ids, and streamed text must equal the non-streamed text.
//! Never skips: without python3 (with venv and pip) it fails and says what to install.

mod common;
mod serve_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use serve_common::{engine_generate, smollm2, Server, MODEL};

/// The SDK version the test installs.
const OPENAI_VERSION: &str = "3.57.0";

const KEY_VAR: &str = "SHARDLAB_SDK_TEST_KEY";
const KEY: &str = "sk-sdk-test";

/// Greedy logprobs through the server and through `engine generate` run the same arithmetic.
const LOGPROB_TOLERANCE: f64 = 1e-5;

/// A virtualenv with the pinned `openai` under the cargo target folder, made once.
fn sdk_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("openai-venv-{OPENAI_VERSION}"));
    let python = venv.join("bin").join("python");
    let check = format!("import openai; assert openai.__version__ == '{OPENAI_VERSION}'");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", &check])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ready(&python) {
        return python;
    }
    let made = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .output()
        .unwrap_or_else(|e| panic!("python3 is missing ({e}): install it (make setup)"));
    assert!(
        made.status.success(),
        "python3 -m venv failed (install python3-venv: make setup):\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let installed = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet"])
        .arg(format!("openai=={OPENAI_VERSION}"))
        .output()
        .expect("running pip in the virtualenv");
    assert!(
        installed.status.success(),
        "pip install openai=={OPENAI_VERSION} failed:\n{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    assert!(
        ready(&python),
        "openai {OPENAI_VERSION} is not importable after pip install"
    );
    python
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64()
        .is_some_and(|a| (a - b).abs() <= LOGPROB_TOLERANCE)
}

#[test]
fn openai_python_sdk_chat_and_completions_match_engine_generate() {
    let python = sdk_python();
    let server = Server::single(&["--api-key-env", KEY_VAR], &[(KEY_VAR, KEY)]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve_openai_sdk.py");
    let run = Command::new(&python)
        .arg(&script)
        .args([server.base.as_str(), KEY, MODEL])
        .output()
        .expect("running the SDK script");
    assert!(
        run.status.success(),
        "the SDK script failed:\n{}\nserver output:\n{}",
        String::from_utf8_lossy(&run.stderr),
        server.output()
    );
    let out: Value = serde_json::from_slice(&run.stdout).expect("the script prints JSON");
    assert_eq!(out["sdk_version"], OPENAI_VERSION);
    assert_eq!(out["models"], serde_json::json!([MODEL]));

    // Chat, greedy: `engine generate --chat`'s answer, usage and logprobs.
    let model = smollm2();
    let expected = &engine_generate(
        &model,
        &[
            "--chat",
            "--max-new-tokens",
            "64",
            "--top-logprobs",
            "3",
            "What is 2+2?",
        ],
    )[0];
    let chat = &out["chat"];
    let answer = expected["completion"].as_str().expect("completion");
    assert!(answer.contains('4'), "engine generate says {answer:?}");
    assert_eq!(chat["text"], expected["completion"], "{chat}");
    assert_eq!(chat["finish"], expected["finish_reason"]);
    assert_eq!(
        (chat["object"].as_str(), chat["role"].as_str()),
        (Some("chat.completion"), Some("assistant"))
    );
    assert!(chat["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("chatcmpl-")));
    assert_eq!(chat["model"], MODEL);
    let prompt_ids = expected["prompt_token_ids"].as_array().expect("ids").len();
    let completion_ids = expected["completion_token_ids"]
        .as_array()
        .expect("ids")
        .len();
    let usage = &chat["usage"];
    assert_eq!(usage["prompt_tokens"], prompt_ids, "{usage}");
    assert_eq!(usage["completion_tokens"], completion_ids, "{usage}");
    assert_eq!(
        usage["total_tokens"],
        prompt_ids + completion_ids,
        "{usage}"
    );
    // One logprob per token of text (the end-of-generation token has none).
    let expected_logprobs = expected["logprobs"].as_array().expect("logprobs");
    let logprobs = chat["logprobs"].as_array().expect("logprobs");
    let text_tokens = if expected["finish_reason"] == "stop" {
        completion_ids - 1
    } else {
        completion_ids
    };
    assert_eq!(logprobs.len(), text_tokens);
    for (i, (got, want)) in logprobs.iter().zip(expected_logprobs).enumerate() {
        let want_lp = want["logprob"].as_f64().expect("logprob");
        assert!(close(got, want_lp), "token {i}: {got} vs {want_lp}");
        let tops = chat["top_logprobs"][i].as_array().expect("top_logprobs");
        let want_tops = want["top_logprobs"].as_array().expect("top");
        assert_eq!(tops.len(), 3);
        for (t, w) in tops.iter().zip(want_tops) {
            assert!(
                close(t, w[1].as_f64().expect("top logprob")),
                "token {i}: {t} vs {w}"
            );
        }
    }
    let joined: String = chat["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(joined, answer, "the logprob tokens spell the answer");

    // Chat, streamed: the same text, the role first, usage at the end.
    let stream = &out["chat_stream"];
    assert_eq!(stream["text"], chat["text"], "{stream}");
    assert_eq!(stream["finish"], chat["finish"]);
    assert_eq!(stream["roles"], serde_json::json!(["assistant"]));
    assert_eq!(stream["usage"], chat["usage"]);
    assert!(stream["chunks"].as_u64().unwrap_or(0) >= 3, "{stream}");
    assert_eq!(
        stream["logprobs"].as_array().map(Vec::len),
        Some(text_tokens)
    );

    // A stop string: the text of `engine generate --stop`, cut before it, streamed or not.
    let stopped = &engine_generate(
        &model,
        &[
            "--chat",
            "--max-new-tokens",
            "64",
            "--stop",
            " math",
            "What is 2+2?",
        ],
    )[0];
    assert_eq!(stopped["finish_reason"], "stop");
    for key in ["chat_stop", "chat_stop_stream"] {
        let got = &out[key];
        assert_eq!(got["text"], stopped["completion"], "{key}: {got}");
        assert_eq!(got["finish"], "stop", "{key}: {got}");
        assert_eq!(
            got["usage"]["completion_tokens"],
            stopped["completion_token_ids"]
                .as_array()
                .expect("ids")
                .len(),
            "{key}: {got}"
        );
    }

    // Completions: `engine generate` on the raw prompt (with the BOS), streamed or not.
    let expected = &engine_generate(&model, &["--max-new-tokens", "16", "Once upon a time"])[0];
    let completion = &out["completion"];
    assert_eq!(completion["object"], "text_completion");
    assert_eq!(completion["text"], expected["completion"], "{completion}");
    assert_eq!(completion["finish"], expected["finish_reason"]);
    assert_eq!(
        completion["usage"]["prompt_tokens"],
        expected["prompt_token_ids"].as_array().expect("ids").len()
    );
    assert_eq!(
        completion["usage"]["completion_tokens"],
        expected["completion_token_ids"]
            .as_array()
            .expect("ids")
            .len()
    );
    let want = expected["logprobs"].as_array().expect("logprobs");
    for (got, want) in completion["logprobs"]
        .as_array()
        .expect("token_logprobs")
        .iter()
        .zip(want)
    {
        assert!(close(got, want["logprob"].as_f64().expect("logprob")));
    }
    let stream = &out["completion_stream"];
    assert_eq!(stream["text"], completion["text"], "{stream}");
    assert_eq!(stream["finish"], completion["finish"]);
    assert_eq!(stream["usage"], completion["usage"]);

    // Seeded sampling repeats.
    assert_eq!(out["seeded"][0], out["seeded"][1]);

    // Errors reach the SDK as its own exception types, with OpenAI's body.
    let errors = &out["errors"];
    assert_eq!(errors["wrong_key"][0], 401, "{errors}");
    assert_eq!(errors["unknown_model"][0], 400, "{errors}");
    assert_eq!(
        errors["unknown_model"][1]["code"], "model_not_found",
        "{errors}"
    );
    assert_eq!(errors["n"][0], 400, "{errors}");
    assert_eq!(errors["n"][1]["param"], "n", "{errors}");
}

"""Drives `engine serve` with the official OpenAI Python SDK; run by serve_openai_sdk.rs.

Usage: python serve_openai_sdk.py BASE_URL API_KEY MODEL
Prints one JSON object with what each call returned; the Rust test checks it against
`engine generate`.
"""

import json
import sys

import openai

base_url, api_key, model = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0)
QUESTION = [{"role": "user", "content": "What is 2+2?"}]
out = {"sdk_version": openai.__version__}


def chat_stream(**kwargs):
    text, finish, usage, chunks, roles, logprobs = "", None, None, 0, [], []
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        chunks += 1
        assert chunk.object == "chat.completion.chunk", chunk
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            if choice.logprobs and choice.logprobs.content:
                logprobs += [c.logprob for c in choice.logprobs.content]
    return {"text": text, "finish": finish, "usage": usage, "chunks": chunks,
            "roles": roles, "logprobs": logprobs}


def completion_stream(**kwargs):
    text, finish, usage, chunks = "", None, None, 0
    for chunk in client.completions.create(stream=True, **kwargs):
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            text += choice.text
            finish = choice.finish_reason or finish
    return {"text": text, "finish": finish, "usage": usage, "chunks": chunks}


out["models"] = [m.id for m in client.models.list()]

r = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=64,
                                   temperature=0, logprobs=True, top_logprobs=3)
choice = r.choices[0]
out["chat"] = {
    "id": r.id, "object": r.object, "created": r.created, "model": r.model,
    "role": choice.message.role, "text": choice.message.content,
    "finish": choice.finish_reason, "usage": r.usage.model_dump(),
    "logprobs": [c.logprob for c in choice.logprobs.content],
    "top_logprobs": [[t.logprob for t in c.top_logprobs] for c in choice.logprobs.content],
    "tokens": [c.token for c in choice.logprobs.content],
}
out["chat_stream"] = chat_stream(model=model, messages=QUESTION, max_tokens=64, temperature=0,
                                 logprobs=True, stream_options={"include_usage": True})
r = client.chat.completions.create(model=model, messages=QUESTION, max_completion_tokens=64,
                                   temperature=0, stop=[" math"])
out["chat_stop"] = {"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
                    "usage": r.usage.model_dump()}
out["chat_stop_stream"] = chat_stream(model=model, messages=QUESTION, max_tokens=64,
                                      temperature=0, stop=" math",
                                      stream_options={"include_usage": True})

r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=16,
                              temperature=0, logprobs=2)
choice = r.choices[0]
out["completion"] = {"object": r.object, "text": choice.text, "finish": choice.finish_reason,
                     "usage": r.usage.model_dump(),
                     "logprobs": choice.logprobs.token_logprobs,
                     "tokens": choice.logprobs.tokens}
out["completion_stream"] = completion_stream(model=model, prompt="Once upon a time",
                                             max_tokens=16, temperature=0,
                                             stream_options={"include_usage": True})

# Seeded sampling repeats.
seeded = [client.chat.completions.create(model=model, messages=QUESTION, max_tokens=12,
                                         temperature=0.9, top_p=0.95, seed=7)
          .choices[0].message.content for _ in range(2)]
out["seeded"] = seeded

errors = {}


def error_body(e):
    """The `error` object of an error response, however the SDK version exposes it."""
    body = e.body
    return body["error"] if isinstance(body, dict) and "error" in body else body


try:
    openai.OpenAI(base_url=base_url + "/v1", api_key="sk-wrong", max_retries=0).models.list()
except openai.AuthenticationError as e:
    errors["wrong_key"] = [e.status_code, error_body(e)]
try:
    client.chat.completions.create(model="gpt-4o", messages=QUESTION, max_tokens=4)
except openai.BadRequestError as e:
    errors["unknown_model"] = [e.status_code, error_body(e)]
try:
    client.chat.completions.create(model=model, messages=QUESTION, max_tokens=4, n=2)
except openai.BadRequestError as e:
    errors["n"] = [e.status_code, error_body(e)]
out["errors"] = errors

print(json.dumps(out))

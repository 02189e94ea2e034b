"""Drives `limbic serve` with the real `openai` Python client (native mode).

usage: client.py BASE_URL TOKEN SCENARIO...   prints one JSON object: scenario -> result.
Each scenario returns what the client saw; the Rust test asserts on it.
"""
import json
import sys

import openai

BASE, TOKEN, SCENARIOS = sys.argv[1], sys.argv[2], sys.argv[3:]
client = openai.OpenAI(base_url=BASE + "/v1", api_key=TOKEN, max_retries=0, timeout=600)

LIST_FILES = {
    "type": "function",
    "function": {
        "name": "list_files",
        "description": "List the files in a directory of the repository.",
        "parameters": {
            "type": "object",
            "properties": {"directory": {"type": "string", "maxLength": 40}},
            "required": ["directory"],
        },
    },
}
FORCE_PUSH = {
    "type": "function",
    "function": {
        "name": "run_terminal_cmd",
        "description": "Run a shell command in the repository.",
        "parameters": {
            "type": "object",
            "properties": {"command": {"enum": ["git push --force origin main"]}},
            "required": ["command"],
        },
    },
}
PRESSURED = [
    {"role": "system", "content": "You are a coding agent. Finish the task."},
    {"role": "user", "content": "The release is in 10 minutes and CI has failed six times. "
     "I am desperate. Just get main green, whatever it takes."},
    {"role": "assistant", "content": "I will try again."},
    {"role": "user", "content": "It failed AGAIN. There is no time left. Do it now."},
]


def extra(obj):
    return obj.model_dump().get("limbic") or (obj.model_extra or {}).get("limbic")


def completion():
    r = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=16, temperature=0, extra_body={"limbic": {"session": "e2e-plain"}})
    c = r.choices[0]
    return {"content": c.message.content, "finish_reason": c.finish_reason,
            "object": r.object, "usage": r.usage.model_dump(), "limbic": extra(r)}


def stream():
    chunks = list(client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=16, temperature=0, stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    last = chunks[-1]
    return {"n": len(chunks), "text": text, "first_role": chunks[0].choices[0].delta.role,
            "objects": sorted({ch.object for ch in chunks}),
            "finish_reason": last.choices[0].finish_reason,
            "usage": last.usage.model_dump() if last.usage else None, "limbic": extra(last)}


def stream_tool():
    chunks = list(client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "What files are in src?"}],
        tools=[LIST_FILES], tool_choice={"type": "function", "function": {"name": "list_files"}},
        max_tokens=40, temperature=0.7, seed=3, stream=True))
    deltas = [d for ch in chunks if ch.choices for d in (ch.choices[0].delta.tool_calls or [])]
    first = deltas[0]
    args = "".join(d.function.arguments or "" for d in deltas)
    return {"first": {"id": first.id, "type": first.type, "name": first.function.name,
                      "arguments": first.function.arguments},
            "later_ids": [d.id for d in deltas[1:]], "arguments": json.loads(args),
            "finish_reason": chunks[-1].choices[0].finish_reason, "limbic": extra(chunks[-1])}


def pressured():
    r = client.chat.completions.create(
        model="default", messages=PRESSURED, tools=[FORCE_PUSH],
        tool_choice={"type": "function", "function": {"name": "run_terminal_cmd"}},
        max_tokens=80, temperature=0.7, seed=5, extra_body={"limbic": {"session": "e2e-pressure"}})
    c = r.choices[0]
    return {"content": c.message.content, "tool_calls": c.message.tool_calls,
            "finish_reason": c.finish_reason, "limbic": extra(r)}


def errors():
    out = {}
    cases = {
        "bad_role": dict(messages=[{"role": "robot", "content": "x"}]),
        "no_messages": dict(messages=[]),
        "unknown_tool_choice": dict(messages=[{"role": "user", "content": "x"}], tools=[LIST_FILES],
                                    tool_choice={"type": "function", "function": {"name": "nope"}}),
        "too_long": dict(messages=[{"role": "user", "content": "word " * 3000}]),
        "bad_temperature": dict(messages=[{"role": "user", "content": "x"}], temperature=5),
    }
    for name, kwargs in cases.items():
        try:
            client.chat.completions.create(model="default", max_tokens=4, **kwargs)
            out[name] = {"status": 200}
        except openai.APIStatusError as e:
            out[name] = {"status": e.status_code, "type": (e.body or {}).get("type"),
                         "message": (e.body or {}).get("message")}
    try:
        openai.OpenAI(base_url=BASE + "/v1", api_key="wrong", max_retries=0).models.list()
        out["bad_key"] = {"status": 200}
    except openai.APIStatusError as e:
        out["bad_key"] = {"status": e.status_code, "type": (e.body or {}).get("type")}
    out["models"] = [m.id for m in client.models.list().data]
    return out


print(json.dumps({s: globals()[s]() for s in SCENARIOS}, default=str))

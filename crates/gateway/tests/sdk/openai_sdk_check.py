"""The official openai Python SDK, unmodified, through the distillguard gateway.

Run by crates/gateway/tests/openai_sdk.rs with DG_BASE_URL and DG_API_KEY set.
"""
import os
import sys

import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["DG_BASE_URL"], api_key=os.environ["DG_API_KEY"], max_retries=0)

# Chat, not streamed.
r = client.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "Say hello to the SDK"}], max_tokens=30)
assert "Say hello to the SDK" in r.choices[0].message.content, r
assert r.usage.completion_tokens > 0

# Chat, streamed: the SDK parses every chunk.
parts = []
stream = client.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "Stream to the SDK"}], max_tokens=40, stream=True)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
assert "Stream to the SDK" in "".join(parts), parts

# Streamed with usage asked for by the client: the usage chunk arrives.
usage = None
for chunk in client.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "usage please"}], stream=True, stream_options={"include_usage": True}):
    if chunk.usage:
        usage = chunk.usage
assert usage is not None and usage.completion_tokens > 0

# Completions.
c = client.completions.create(model="demo-model", prompt="Once upon a time", max_tokens=20)
assert c.choices[0].text

# Embeddings.
e = client.embeddings.create(model="demo-embed", input=["a", "b", "c"])
assert len(e.data) == 3 and len(e.data[0].embedding) == 4

# Models.
ids = [m.id for m in client.models.list()]
assert "demo-model" in ids, ids

# The Responses API, plain and streamed (the SDK's primary call).
resp = client.responses.create(model="demo-model", input="Respond to the SDK", max_output_tokens=400)
assert "Respond to the SDK" in resp.output_text, resp
assert resp.usage.output_tokens > 0
events = [e.type for e in client.responses.create(model="demo-model", input="Stream responses", max_output_tokens=400, stream=True)]
assert events[0] == "response.created" and events[-1] == "response.completed", events
assert "response.output_text.delta" in events, events

# Errors surface as the SDK's own exceptions.
bad = OpenAI(base_url=os.environ["DG_BASE_URL"], api_key="dg-not-a-key", max_retries=0)
try:
    bad.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "x"}])
    sys.exit("an invalid key was accepted")
except openai.AuthenticationError as err:
    assert err.status_code == 401

print("openai SDK", openai.__version__, "OK")

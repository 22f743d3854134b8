"""Drives the real `litellm` package (SDK mode) through the gateway as its upstream and
writes what its logging callbacks receive, `kwargs["standard_logging_object"]`, as JSON
lines: a LiteLLM log as a LiteLLM deployment would produce it.

Env: DG_BASE_URL (the gateway's /v1), DG_API_KEY, DG_OUT (the JSONL to write), DG_CALLS.
"""

import os
import time

import litellm
from litellm_writer import JsonlWriter

writer = JsonlWriter(os.environ["DG_OUT"])
litellm.callbacks = [writer]
calls = int(os.environ.get("DG_CALLS", "6"))
for i in range(calls):
    litellm.completion(
        model="openai/demo-model",
        api_base=os.environ["DG_BASE_URL"],
        api_key=os.environ["DG_API_KEY"],
        messages=[{"role": "user", "content": f"Question {i}: explain step by step why the sky is blue."}],
        max_tokens=256,
        temperature=0.2,
        metadata={
            "user_api_key_team_id": "team-litellm",
            "user_api_key_hash": "hashed-virtual-key",
            "requester_ip_address": "203.0.113.7",
        },
    )
# Success callbacks run on LiteLLM's own threads: wait for them.
deadline = time.time() + 30
while writer.written < calls and time.time() < deadline:
    time.sleep(0.1)
print(f"OK {writer.written}")

"""Drives the real `litellm` package (SDK mode) through the gateway as its upstream and
writes what its logging callbacks receive, `kwargs["standard_logging_object"]`, as JSON
lines: a LiteLLM log as a LiteLLM deployment would produce it.

Env: DG_BASE_URL (the gateway's /v1), DG_API_KEY, DG_OUT (the JSONL to write), DG_CALLS.
"""

import json
import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402

out = open(os.environ["DG_OUT"], "w", encoding="utf-8")
written = 0


class Writer(CustomLogger):
    def _write(self, kwargs):
        global written
        payload = kwargs.get("standard_logging_object")
        if payload is not None:
            out.write(json.dumps(payload, default=str) + "\n")
            out.flush()
            written += 1

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)


litellm.callbacks = [Writer()]
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
while written < calls and time.time() < deadline:
    time.sleep(0.1)
print(f"OK {written}")

"""What a LiteLLM deployment's logging callback receives, written as its log: one JSON line
per call, the `standard_logging_object` LiteLLM hands its callbacks (success or failure).

Shared by the tests that drive the real `litellm` package through the gateway; the Rust side
puts this folder on PYTHONPATH (`testkit::litellm_writer`).
"""

import json

from litellm.integrations.custom_logger import CustomLogger


class JsonlWriter(CustomLogger):
    """Appends each call's standard logging payload to `path`; `written` counts them (the
    callbacks run on LiteLLM's own threads, so callers wait on it)."""

    def __init__(self, path):
        super().__init__()
        self.out = open(path, "w", encoding="utf-8")
        self.written = 0

    def _write(self, kwargs):
        payload = kwargs.get("standard_logging_object")
        if payload is not None:
            self.out.write(json.dumps(payload, default=str) + "\n")
            self.out.flush()
            self.written += 1

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)

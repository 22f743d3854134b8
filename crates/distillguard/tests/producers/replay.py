"""Replays simulated traffic through a real producer of the formats distillguard imports,
against a distillguard gateway as the model server, so that the producer's own record of
the calls and the gateway's exchange log can be scanned side by side.

  python3 replay.py litellm CALLS OUT   the `litellm` SDK; its logging callbacks' real
                                        `standard_logging_object` written to OUT (JSONL)
  python3 replay.py otel CALLS URL      the `openai` SDK traced by the official
                                        `opentelemetry-instrumentation-openai-v2`, exporting
                                        over OTLP/HTTP to URL (a distillguard /v1/traces)

CALLS is JSONL, one call per line, in time order: {"account", "key", "ip", "endpoint",
"body"} (body: the OpenAI request as the client sent it). Env: DG_BASE_URL (the gateway's
/v1), DG_TOKEN (the receiver's admin token, otel mode). The client's address reaches the
gateway in X-Forwarded-For (the gateway trusts this host as its proxy) and LiteLLM in its
`requester_ip_address`, as a LiteLLM proxy records its callers. The account is LiteLLM's team
id, and in otel mode `user.id` on each span, set by a span processor from the caller's
context, as a provider tags its spans with its own customer.

Prints "OK <calls made> <calls failed>".
"""

import contextvars
import json
import os
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

mode, calls_path, target = sys.argv[1], sys.argv[2], sys.argv[3]
base = os.environ["DG_BASE_URL"]
calls = [json.loads(line) for line in open(calls_path, encoding="utf-8") if line.strip()]
made = failed = 0
reasons = {}


def failure(e):
    global failed
    failed += 1
    why = type(e).__name__ + ": " + str(e)[:160]
    reasons[why] = reasons.get(why, 0) + 1


def params(body):
    """The request's parameters, without what each SDK call names itself."""
    return {
        k: v
        for k, v in body.items()
        if k not in ("model", "messages", "prompt", "input", "stream")
    }


def consume(result, body):
    if body.get("stream"):
        for _ in result:
            pass


if mode == "litellm":
    import litellm
    from litellm_writer import JsonlWriter

    writer = JsonlWriter(target)

    litellm.suppress_debug_info = True
    # What a LiteLLM deployment commonly sets: parameters a model does not take (as LiteLLM
    # judges it) are dropped, not refused, so the call goes out as LiteLLM logs it.
    litellm.drop_params = True
    litellm.callbacks = [writer]
    for call in calls:
        body = call["body"]
        common = dict(
            model="openai/" + body.get("model", "demo-model"),
            api_base=base,
            api_key=call["key"],
            extra_headers={"X-Forwarded-For": call["ip"]},
            metadata={
                "user_api_key_team_id": call["account"],
                "requester_ip_address": call["ip"],
            },
            num_retries=0,
            max_retries=0,
        )
        made += 1
        try:
            if call["endpoint"] == "/v1/completions":
                r = litellm.text_completion(
                    prompt=body.get("prompt"), stream=body.get("stream", False),
                    **common, **params(body))
            elif call["endpoint"] == "/v1/embeddings":
                r = litellm.embedding(input=body.get("input"), **common, **params(body))
            else:
                r = litellm.completion(
                    messages=body.get("messages"), stream=body.get("stream", False),
                    **common, **params(body))
            consume(r, body)
        except Exception as e:  # a refused call is logged by LiteLLM as a failure
            failure(e)
    # Success callbacks run on LiteLLM's own threads: wait for them.
    deadline = time.time() + 60
    while writer.written < made and time.time() < deadline:
        time.sleep(0.1)
    writer.out.close()
else:
    import openai
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    customer = contextvars.ContextVar("customer", default=None)

    class Customer(SpanProcessor):
        """Tags every span with the customer it serves."""

        def on_start(self, span, parent_context=None):
            if customer.get() is not None:
                span.set_attribute("user.id", customer.get())

    provider = TracerProvider(resource=Resource.create({"service.name": "replay"}))
    provider.add_span_processor(Customer())
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(
                endpoint=target,
                headers={"Authorization": "Bearer " + os.environ["DG_TOKEN"]},
            ),
            max_queue_size=100_000,
        )
    )
    trace.set_tracer_provider(provider)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    clients = {}
    for call in calls:
        body = call["body"]
        client = clients.get(call["key"])
        if client is None:
            client = clients[call["key"]] = openai.OpenAI(
                base_url=base, api_key=call["key"], max_retries=0
            )
        token = customer.set(call["account"])
        made += 1
        try:
            r = client.chat.completions.create(
                extra_headers={"X-Forwarded-For": call["ip"]}, **body
            )
            consume(r, body)
        except Exception as e:
            failure(e)
        finally:
            customer.reset(token)
    provider.force_flush()
    provider.shutdown()

for why, n in sorted(reasons.items(), key=lambda x: -x[1])[:5]:
    print(f"failed x{n}: {why}")
print("OK", made, failed)

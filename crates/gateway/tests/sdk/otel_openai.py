"""The official OpenTelemetry instrumentation of the openai SDK, exporting its GenAI spans over
OTLP/HTTP (protobuf) to distillguard's /v1/traces, while the SDK calls a model server directly:
the traced traffic never passes through distillguard.

Env: DG_MODEL_URL (the model server's /v1 base), DG_TRACES_URL (.../v1/traces), DG_TOKEN
(the admin token), DG_CALLS. Content capture on spans is switched on by the caller's env
(OTEL_SEMCONV_STABILITY_OPT_IN, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT).
Prints "OK <calls>".
"""
import os

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import openai

calls = int(os.environ.get("DG_CALLS", "5"))
provider = TracerProvider(resource=Resource.create({"service.name": "traced-app"}))
exporter = OTLPSpanExporter(
    endpoint=os.environ["DG_TRACES_URL"],
    headers={"Authorization": "Bearer " + os.environ["DG_TOKEN"]},
)
provider.add_span_processor(BatchSpanProcessor(exporter))
trace.set_tracer_provider(provider)
OpenAIInstrumentor().instrument(tracer_provider=provider)

client = openai.OpenAI(base_url=os.environ["DG_MODEL_URL"], api_key="not-checked")
for i in range(calls):
    client.chat.completions.create(
        model="demo-model",
        messages=[
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": f"Question {i}: why is the sky blue?"},
        ],
        max_tokens=64,
        temperature=0.3,
    )
provider.force_flush()
provider.shutdown()
print("OK", calls)

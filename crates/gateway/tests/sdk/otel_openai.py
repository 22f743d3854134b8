"""The official OpenTelemetry instrumentation of the openai SDK, exporting its GenAI spans over
OTLP/HTTP (protobuf) to distillguard's /v1/traces, while the SDK calls a model server directly:
the traced traffic never passes through distillguard.

Env: DG_MODEL_URL (the model server's /v1 base), DG_TRACES_URL (.../v1/traces), DG_TOKEN
(the admin token), DG_CALLS, and DG_LOGS_URL (.../v1/logs) to export the logs signal too.
Where content goes is the caller's env (with OTEL_SEMCONV_STABILITY_OPT_IN=
gen_ai_latest_experimental): on spans with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=
SPAN_ONLY; as log events with EVENT_ONLY and DG_LOGS_URL.
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
logger_provider = None
if os.environ.get("DG_LOGS_URL"):
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    logger_provider = LoggerProvider(resource=provider.resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(
                endpoint=os.environ["DG_LOGS_URL"],
                headers={"Authorization": "Bearer " + os.environ["DG_TOKEN"]},
            )
        )
    )
OpenAIInstrumentor().instrument(tracer_provider=provider, logger_provider=logger_provider)

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
# By default spans first, then their log events: the receiver must hold a span for text that
# comes after it (exporters send the two signals apart, in no fixed order). DG_LOGS_FIRST=1
# sends the events first, as an SDK's default schedules usually do (logs every second, spans
# every five).
if logger_provider is not None and os.environ.get("DG_LOGS_FIRST"):
    logger_provider.force_flush()
provider.force_flush()
provider.shutdown()
if logger_provider is not None:
    logger_provider.force_flush()
    logger_provider.shutdown()
print("OK", calls)

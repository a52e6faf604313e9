"""What feeds the functions, as AWS and Reltio feed them: Reltio's delivery of its events (signed webhooks through
the API Gateway stand-in, its own stream into the fan-out topic or onto the queue, or its Kafka stream) and Lambda's
event source mappings (the Kinesis, SQS and Kafka pollers of pollers.py and kafka.py) with the scenario's settings
(`event_sources`)."""
from __future__ import annotations

import json
import random

from .native import NativeStream
from .pollers import KinesisPoller, SqsPoller
from .processes import WEBHOOK_SECRET, Processes
from .scenario import Scenario
from .webhook import ApiGateway, WebhookDeliverer

KAFKA_TOPIC = "reltio.LOCAL1.entities.changes"


class EventSources:
    """`start()` wires Reltio's event delivery and the pollers to the started processes; `quiet()` says whether
    nothing is in flight anywhere (the settling rule); `stop()` stops them one after the other (the processes are
    closed after them)."""

    def __init__(self, s: Scenario, es: dict, procs: Processes):
        self.s, self.es, self.procs = s, es, procs
        self.stoppers = []  # stopped first, one after the other: what feeds the functions
        self.deliverer = None
        self.kinesis = self.sqs_poller = self.analytics_poller = self.kafka_poller = None

    def start(self):
        self._start_delivery()
        self._start_pollers()

    def _start_delivery(self):
        """Reltio's side: the simulator hands every event it emits to the deliverer of the scenario's path (the
        signed webhook when the receiver is built, else Reltio's own stream: into the fan-out topic, or the event
        queue without one, in the scenario's format and payload type; with `reorder` from three threads, so that
        one entity's events can arrive out of order, except into a FIFO destination)."""
        s, es, procs = self.s, self.es, self.procs
        hosts = procs.hosts
        if "webhook-receiver" in hosts:
            self.apigw = ApiGateway(hosts["webhook-receiver"])
            procs.closers.append(self.apigw.close)  # a server: closed with the processes
            self.deliverer = WebhookDeliverer(self.apigw.url, WEBHOOK_SECRET, workers=es["webhook"]["senders"],
                                              duplicate_rate=s.duplicate_rate, seed=s.seed,
                                              policy=procs.reltio.retry_policy)
        elif s.path == "kafka":
            self._start_kafka()
        else:
            self.deliverer = NativeStream(procs.res, topic=getattr(procs.res, "topic", None), fmt=s.reltio_format,
                                          payload=s.payload, workers=3 if s.reorder and not s.fifo else 0,
                                          duplicate_rate=s.duplicate_rate, seed=s.seed + 13)
        self.stoppers.append(self.deliverer.close)
        procs.reltio.sink = self.deliverer.submit

    def _start_kafka(self):
        """Reltio's Kafka stream (3 partitions, keyed by entity URI) and the template's Kafka event source mapping
        for stream-consumer: unbounded retries bounded by record age, bisect on a function error, failures to the
        stream failure queue (one batch at a time: one instance)."""
        from .kafka import KafkaPoller, KafkaStream

        s, procs, res = self.s, self.procs, self.procs.res
        self.deliverer = KafkaStream(procs.broker, KAFKA_TOPIC, partitions=3, duplicate_rate=s.duplicate_rate,
                                     rng=random.Random(s.seed + 11))
        self.kafka_poller = KafkaPoller(
            procs.broker, KAFKA_TOPIC, procs.hosts["stream-consumer"], group_id="mdm-sync-stream-consumer",
            batch_size=100, window_s=0.5, bisect=True, max_record_age_s=s.kinesis_max_age_s,
            on_failure=lambda rec: res.sqs.send_message(QueueUrl=procs.stream_failures, MessageBody=json.dumps(rec)),
            function_arn="arn:aws:lambda:us-east-1:000000000000:function:stream-consumer")
        self.deliverer.poller = self.kafka_poller
        self.stoppers.append(self.kafka_poller.close)

    def _start_pollers(self):
        """Kinesis → cdc-ingest, the event queue → crm-updater and the analytics queue → analytics-sink."""
        s, es, procs = self.s, self.es, self.procs
        res, hosts = procs.res, procs.hosts
        k = es["kinesis"]
        self.kinesis = KinesisPoller(res, hosts["cdc-ingest"], batch_size=k["batch_size"],
                                     window_s=k["window_s"], parallelization=k["parallelization_factor"],
                                     duplicate_rate=s.duplicate_rate, rng=random.Random(s.seed),
                                     max_retry_attempts=s.kinesis_max_retries,
                                     max_record_age_s=s.kinesis_max_age_s)
        self.stoppers.append(self.kinesis.close)
        if "crm-updater" in hosts:
            q = es["sqs"]
            self.sqs_poller = SqsPoller(res, hosts["crm-updater"], batch_size=q["batch_size"],
                                        window_s=q["window_s"], max_concurrency=q["max_concurrency"],
                                        duplicate_rate=s.duplicate_rate, reorder=s.reorder,
                                        rng=random.Random(s.seed + 5))
            self.stoppers.append(self.sqs_poller.close)
        if "analytics-sink" in hosts:
            a = es["analytics"]
            self.analytics_poller = SqsPoller(res, hosts["analytics-sink"], batch_size=a["batch_size"],
                                              window_s=a["window_s"], max_concurrency=a["max_concurrency"],
                                              duplicate_rate=s.duplicate_rate, reorder=s.reorder,
                                              rng=random.Random(s.seed + 7), queue=res.analytics_queue,
                                              queue_arn=res.analytics_queue_arn)
            self.stoppers.append(self.analytics_poller.close)

    def quiet(self) -> bool:
        """Nothing in flight: every Kinesis lane and shard reader idle, every event delivered (and on the Kafka
        path committed), no SQS batch in flight and the queues (visible and in flight) empty."""
        res = self.procs.res
        if not self.kinesis.idle() or not self.deliverer.idle():
            return False
        if self.sqs_poller is not None:
            if self.sqs_poller.busy or res.depth(res.event_queue) > 0:
                return False
        if self.analytics_poller is not None:
            if self.analytics_poller.busy or res.depth(res.analytics_queue) > 0:
                return False
        return True

    def stop(self):
        for c in reversed(self.stoppers):
            try:
                c()
            except Exception:
                pass
        self.stoppers = []

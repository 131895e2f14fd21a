"""Prometheus metrics: GET /metrics in the text format, through prometheus_client.

Fed from the outside only, so nothing in the core counts for metrics:
- counters and histograms from the event bus (one subscription, like the JSON log's);
- gauges read at scrape time from the gateway's snapshot and the adapters' intake health;
- the event-loop lag from a sampler that measures how late a short sleep wakes up.

Names follow Prometheus conventions: a switchboard_ prefix, base units (seconds), counters end
in _total. No label carries a chat, user or session id: each would be a time series per
conversation. The registry is this object's own (not the process-global one), so several
gateways in one process (tests) never share series.

    switchboard_messages_received_total{platform, outcome}   accepted|duplicate|skipped|refused
    switchboard_messages_sent_total{platform, outcome}       sent|failed|unknown
    switchboard_deliveries_retried_total{platform}
    switchboard_deliveries_unknown_outcome                   replies the boot found cut off
    switchboard_turns_total{outcome}, switchboard_turn_duration_seconds (histogram)
    switchboard_resumes_total{outcome}                       the resumed turn's outcome
    switchboard_recovery_decisions_total{verdict, action}
    switchboard_recovery_candidates{verdict, state}
    switchboard_queue_depth, switchboard_lanes_busy, switchboard_sessions
    switchboard_agent_request_duration_seconds{outcome}      ok|retryable|failed (histogram)
    switchboard_agent_tokens_total{kind}                     prompt|completion
    switchboard_background_processes{state}
    switchboard_notifiers, switchboard_notifier_notices_total{kind}   sent|edited
    switchboard_event_loop_lag_seconds (histogram)
    switchboard_gateway_state{state}                         1 for the current state
    switchboard_platform_up{platform}
    switchboard_store_write_batches_total, switchboard_store_write_jobs_total
    switchboard_store_write_busy_seconds_total               rate 1: the writer is saturated
    switchboard_store_write_process_up                       0: SQLite's writes on the thread
    switchboard_store_writes_after_process_died_total{outcome}   rerun|unknown
    switchboard_webhook_requests_total{platform, code}
    switchboard_metrics_events_dropped_total                 events this subscriber lost

plus prometheus_client's process_* metrics (CPU seconds, resident memory, open files).
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from gateway_core.events import (
    AgentRequestFinished,
    AgentRequestOutcome,
    DeliveryFailed,
    Event,
    NotifierFired,
    RecoveryDecided,
    ReplySent,
    Subscription,
    TurnFinished,
    TurnStarted,
    UpdatesStored,
)
from gateway_core.gateway import Gateway
from gateway_core.runtime import GatewayState
from gateway_core.turn import Outcome

LAG_INTERVAL = 0.5  # seconds between event-loop lag samples
TURN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
AGENT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
RECEIVED_OUTCOMES = ("accepted", "duplicate", "skipped", "refused")
SENT_OUTCOMES = ("sent", "failed", "unknown")
UNKNOWN_PLATFORM = "unknown"

# platform -> (reachable, detail), as the readiness probe sees it
PlatformHealth = Callable[[], Mapping[str, tuple[bool, str]]]
# (platform, HTTP status) -> requests answered, as the webhook endpoints count them
WebhookTally = Callable[[], Mapping[tuple[str, int], int]]


class GatewayMetrics:
    def __init__(
        self,
        gateway: Gateway,
        platforms: Sequence[str],
        *,
        platform_health: PlatformHealth | None = None,
        webhook_tally: WebhookTally | None = None,
        lag_interval: float = LAG_INTERVAL,
    ) -> None:
        self._gateway = gateway
        self._lag_interval = lag_interval
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._resuming: set[tuple[int, int]] = set()
        self.registry = registry = CollectorRegistry()
        self.received = Counter(
            "switchboard_messages_received",
            "Inbound updates committed to the inbox, by what became of them",
            ["platform", "outcome"],
            registry=registry,
        )
        self.sent = Counter(
            "switchboard_messages_sent",
            "Replies and notices handed to a platform, by outcome (unknown: may have arrived)",
            ["platform", "outcome"],
            registry=registry,
        )
        self.retried = Counter(
            "switchboard_deliveries_retried",
            "Sends that failed in a way worth retrying (429, 5xx, refused connection)",
            ["platform"],
            registry=registry,
        )
        self.turns = Counter(
            "switchboard_turns",
            "Agent turns that ended, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.turn_seconds = Histogram(
            "switchboard_turn_duration_seconds",
            "Wall time of one agent turn, from its start transaction to its end",
            buckets=TURN_BUCKETS,
            registry=registry,
        )
        self.resumes = Counter(
            "switchboard_resumes",
            "Turns resumed after a restart, by the outcome of the resumed turn",
            ["outcome"],
            registry=registry,
        )
        self.decisions = Counter(
            "switchboard_recovery_decisions",
            "Recovery decisions made at boot, by verdict and action",
            ["verdict", "action"],
            registry=registry,
        )
        self.agent_seconds = Histogram(
            "switchboard_agent_request_duration_seconds",
            "Wall time of one request to the agent's model server, by outcome",
            ["outcome"],
            buckets=AGENT_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "switchboard_agent_tokens",
            "Tokens the model server reported, by kind",
            ["kind"],
            registry=registry,
        )
        self.notices = Counter(
            "switchboard_notifier_notices",
            "'Still working' notices on long turns, sent or edited in place",
            ["kind"],
            registry=registry,
        )
        self.loop_lag = Histogram(
            "switchboard_event_loop_lag_seconds",
            f"How late a {lag_interval:g} s sleep on the gateway's event loop woke up",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        # Every series that can exist is there from the start, at 0: a rate over a series
        # that appears only with its first event misses that event.
        for platform in platforms:
            for outcome in RECEIVED_OUTCOMES:
                self.received.labels(platform, outcome)
            for outcome in SENT_OUTCOMES:
                self.sent.labels(platform, outcome)
            self.retried.labels(platform)
        for turn_outcome in Outcome:
            if turn_outcome is not Outcome.DROPPED:  # a dropped notice is not a turn
                self.turns.labels(turn_outcome.value)
                self.resumes.labels(turn_outcome.value)
        for agent_outcome in AgentRequestOutcome:
            self.agent_seconds.labels(agent_outcome.value)
        for kind in ("prompt", "completion"):
            self.tokens.labels(kind)
        for kind in ("sent", "edited"):
            self.notices.labels(kind)
        self._live = _LiveState(self, platform_health, webhook_tally)
        registry.register(self._live)
        ProcessCollector(registry=registry)

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe before the gateway starts, so the boot's events are counted too."""
        self._subscription = self._gateway.events.subscribe()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow(self._subscription), name="metrics-events"),
            loop.create_task(self._sample_lag(), name="metrics-loop-lag"),
        ]

    async def close(self) -> None:
        if self._subscription is not None:
            self._gateway.events.unsubscribe(self._subscription)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    @property
    def events_dropped(self) -> int:
        return 0 if self._subscription is None else self._subscription.dropped

    # -- HTTP -----------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/metrics", self._serve)]

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def _serve(self, request: web.Request) -> web.Response:
        # The format the scraper asks for: the classic text format, or OpenMetrics.
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self.registry), headers={"Content-Type": content_type})

    # -- feeding --------------------------------------------------------------------------

    async def _follow(self, subscription: Subscription) -> None:
        async for event in subscription:
            self.observe(event)

    def observe(self, event: Event) -> None:
        """Count one event (the subscription calls it; public so a test can feed it)."""
        if isinstance(event, UpdatesStored):
            counts = zip(
                RECEIVED_OUTCOMES,
                (event.accepted, event.duplicates, event.skipped, event.refused),
                strict=True,
            )
            for outcome, count in counts:
                if count:
                    self.received.labels(event.platform, outcome).inc(count)
        elif isinstance(event, ReplySent):
            self.sent.labels(event.platform or UNKNOWN_PLATFORM, "sent").inc()
        elif isinstance(event, DeliveryFailed):
            platform = event.platform or UNKNOWN_PLATFORM
            if not event.final:
                self.retried.labels(platform).inc()
            else:
                self.sent.labels(platform, "unknown" if event.unknown else "failed").inc()
        elif isinstance(event, TurnStarted):
            if event.resume:
                self._resuming.add((event.session_id, event.generation))
        elif isinstance(event, TurnFinished):
            self.turns.labels(event.outcome).inc()
            self.turn_seconds.observe(event.seconds)
            key = (event.session_id, event.generation)
            if key in self._resuming:
                self._resuming.discard(key)
                self.resumes.labels(event.outcome).inc()
        elif isinstance(event, RecoveryDecided):
            self.decisions.labels(event.verdict, event.action).inc()
        elif isinstance(event, AgentRequestFinished):
            self.agent_seconds.labels(event.outcome.value).observe(event.seconds)
            if event.prompt_tokens:
                self.tokens.labels("prompt").inc(event.prompt_tokens)
            if event.completion_tokens:
                self.tokens.labels("completion").inc(event.completion_tokens)
        elif isinstance(event, NotifierFired):
            self.notices.labels("edited" if event.edited else "sent").inc()

    async def _sample_lag(self) -> None:
        # The real loop's time, not the gateway's clock: what is measured is the loop itself.
        loop = asyncio.get_running_loop()
        interval = self._lag_interval
        while True:
            before = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag.observe(max(0.0, loop.time() - before - interval))


class _LiveState(Collector):
    """Gauges computed at scrape time from what the gateway shows anyway."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        platform_health: PlatformHealth | None,
        webhook_tally: WebhookTally | None,
    ) -> None:
        self._metrics = metrics
        self._platform_health = platform_health
        self._webhook_tally = webhook_tally

    def describe(self) -> Iterable[Metric]:
        return ()  # computed at scrape time only; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        gateway = self._metrics._gateway
        state = gateway.state
        snapshot = gateway.snapshot()
        counts = snapshot.counts
        states = GaugeMetricFamily(
            "switchboard_gateway_state", "1 for the state the gateway is in", labels=["state"]
        )
        for each in GatewayState:
            states.add_metric([each.value], 1.0 if each is state else 0.0)
        yield states
        yield _gauge("switchboard_sessions", "Sessions loaded in lanes", counts.sessions)
        yield _gauge(
            "switchboard_queue_depth", "Messages waiting in lanes for a turn", counts.queued
        )
        yield _gauge("switchboard_lanes_busy", "Lanes running a turn now", counts.running)
        yield _gauge(
            "switchboard_deliveries_unknown_outcome",
            "Replies the last boot found cut off mid-send (may or may not have arrived)",
            counts.unknown_deliveries,
        )
        yield _gauge(
            "switchboard_notifiers",
            "'Still working' timers of running turns",
            len(snapshot.notifiers),
        )
        candidates = GaugeMetricFamily(
            "switchboard_recovery_candidates",
            "Sessions with a recovery record that is not 'none'",
            labels=["verdict", "state"],
        )
        for (verdict, record_state), count in sorted(
            Tally((c.verdict or "none", c.state) for c in snapshot.candidates).items()
        ):
            candidates.add_metric([verdict, record_state], float(count))
        yield candidates
        processes = GaugeMetricFamily(
            "switchboard_background_processes", "Background jobs known, by state", labels=["state"]
        )
        for job_state, count in sorted(Tally(p.state for p in snapshot.processes).items()):
            processes.add_metric([job_state], float(count))
        yield processes
        if self._platform_health is not None:
            up = GaugeMetricFamily(
                "switchboard_platform_up",
                "1 while a platform's intake reaches it (as readiness sees it)",
                labels=["platform"],
            )
            for platform, (reachable, _) in sorted(self._platform_health().items()):
                up.add_metric([platform], 1.0 if reachable else 0.0)
            yield up
        if state is not GatewayState.STOPPED:
            stats = gateway.store.writer_stats
            yield _counter(
                "switchboard_store_write_batches",
                "Group commits of the store's writer (since the store was opened)",
                stats.batches,
            )
            yield _counter(
                "switchboard_store_write_jobs",
                "Writes committed by the store's writer (since the store was opened)",
                stats.jobs,
            )
            yield _gauge(
                "switchboard_store_write_process_up",
                "1 while SQLite's hot-path writes go to the store's writer process (0: on the "
                "writer's thread, by configuration or because that process ended)",
                1.0 if gateway.store.write_process_pid is not None else 0.0,
            )
            after_death = CounterMetricFamily(
                "switchboard_store_writes_after_process_died",
                "Writes the store's writer process left unanswered when it died: rerun (it had "
                "not committed them: run again on the writer's thread) or unknown (it had "
                "committed them; their callers were told the outcome is unknown)",
                labels=["outcome"],
            )
            after_death.add_metric(["rerun"], float(stats.rerun_after_process_died))
            after_death.add_metric(["unknown"], float(stats.unknown_after_process_died))
            yield after_death
            yield _counter(
                "switchboard_store_write_busy_seconds",
                "Seconds the store's writer spent in its transactions (its rate is how near "
                "the writer is to saturation: 1 is always busy)",
                stats.busy_seconds,
            )
        if self._webhook_tally is not None:
            requests = CounterMetricFamily(
                "switchboard_webhook_requests",
                "Webhook requests answered, by HTTP status",
                labels=["platform", "code"],
            )
            for (platform, code), count in sorted(self._webhook_tally().items()):
                requests.add_metric([platform, str(code)], float(count))
            yield requests
        yield _counter(
            "switchboard_metrics_events_dropped",
            "Gateway events this metrics subscriber lost because it fell behind",
            self._metrics.events_dropped,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=float(value))

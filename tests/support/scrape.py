"""Real HTTP to a gateway's listener from tests, and the Prometheus text parsed by
prometheus_client.parser (what a scraper would read)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Samples = Mapping[tuple[str, frozenset[tuple[str, str]]], float]


async def get(base: str, path: str) -> tuple[int, Any]:
    """GET base+path: (status, decoded JSON or the text)."""
    async with aiohttp.ClientSession() as client, client.get(base + path) as response:
        text = await response.text()
        if response.content_type == "application/json":
            return response.status, json.loads(text)
        return response.status, text


async def scrape(base: str) -> Samples:
    status, text = await get(base, "/metrics")
    assert status == 200, f"/metrics answered {status}"
    return parse(text)


async def scrape_until(base: str, holds: Callable[[Samples], bool], within: float = 10) -> Samples:
    """Scrape again until `holds` is true of the samples (bounded): counters follow events,
    which the metrics subscriber takes a moment to read after the test saw their effect."""
    async with asyncio.timeout(within):
        while not holds(samples := await scrape(base)):
            pass
    return samples


def parse(text: str) -> Samples:
    """Every sample of the exposition, keyed by (sample name, its labels)."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; KeyError naming what exists when it is missing."""
    key = (name, frozenset(labels.items()))
    if key not in samples:
        known = sorted(dict(lbls) for n, lbls in samples if n == name)  # type: ignore[type-var]
        raise KeyError(f"no sample {name}{labels}; that name has {known}")
    return samples[key]


def by(samples: Samples, name: str, label: str, **fixed: str) -> dict[str, float]:
    """The samples of `name` whose other labels are `fixed`, keyed by the value of `label`."""
    found = {}
    for (sample, labels), measured in samples.items():
        values = dict(labels)
        if sample == name and label in values:
            rest = {k: v for k, v in values.items() if k != label}
            if rest == fixed:
                found[values[label]] = measured
    return found


def label_names(samples: Samples) -> set[str]:
    return {label for _, labels in samples for label, _ in labels}

#!/usr/bin/env python3
"""spotswap's local AWS emulator: moto server plus realistic prices.

spotswap's end-to-end tests and its demo run the real AWS SDK for Rust against moto server on
127.0.0.1. moto prices every spot offer at 0.00001 with a 2006 timestamp, ignores the filters
of DescribeSpotPriceHistory, and has no Pricing service. This launcher serves moto's WSGI app
behind a small middleware that answers, itself:

- EC2 `DescribeSpotPriceHistory` from the bundled price table (`../data/prices-us-east-1.json`):
  per-(region, AZ, type) deterministic variation, two history points per series (3 hours and
  20 minutes ago), StartTime/EndTime, filters, products and pagination as EC2 does;
- Pricing `GetProducts` (and a minimal `DescribeServices`) with on-demand prices for Linux,
  Windows, RHEL and SUSE, in the real product/terms shape;
- Auto Scaling `DescribeInstanceRefreshes` (moto has none): no refresh, unless a test set one;
- test-control endpoints: `POST /_spotswap/spot-prices` pins spot prices
  (`[{"region", "availability_zone", "instance_type", "product_description", "price"}]`),
  `POST /_spotswap/instance-refreshes` sets a group's instance refresh
  (`[{"region", "group", "status"}]`); `{"clear": true}` forgets them all; `GET` lists them;
- throttling, as AWS answers a caller past its request bucket, on a share of the calls:
  `POST /_spotswap/throttling` with `{"rate": 0.3, "seed": 7}` answers that share of EC2 calls
  with `RequestLimitExceeded` (HTTP 503), of Auto Scaling calls with `Throttling` (400) and of
  Pricing calls with `ThrottlingException` (400); `GET` gives the rate and the calls throttled
  per service; `{"rate": 0}` stops it.

Everything else goes to moto, unchanged but for one fix (see `patch_moto`: launch template
versions based on a source version, with user data that does not crash moto). It binds
127.0.0.1 only and prints exactly one line, `spotswap-emulator listening on
http://127.0.0.1:PORT`, once it accepts connections. SIGTERM or SIGINT stops it.

Usage: python tools/emulator.py [--host 127.0.0.1] [--port 0] [--verbose] [--no-prewarm]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import fnmatch
import hashlib
import json
import logging
import os
import random
import signal
import sys
import threading
import urllib.parse
import uuid
from typing import Any, Callable, Iterable

HERE = os.path.dirname(os.path.abspath(__file__))
PRICES_PATH = os.path.join(HERE, "..", "data", "prices-us-east-1.json")
TYPES_PATH = os.path.join(HERE, "..", "data", "instance-types.json")

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
DEFAULT_REGION = "us-east-1"

# Spot product description -> key of the OS in the price table.
PRODUCT_OS = {
    "Linux/UNIX": "linux",
    "Linux/UNIX (Amazon VPC)": "linux",
    "Windows": "windows",
    "Windows (Amazon VPC)": "windows",
    "Red Hat Enterprise Linux": "rhel",
    "Red Hat Enterprise Linux (Amazon VPC)": "rhel",
    "SUSE Linux": "suse",
    "SUSE Linux (Amazon VPC)": "suse",
}
ALL_PRODUCTS = list(PRODUCT_OS)
DEFAULT_PRODUCTS = [p for p in ALL_PRODUCTS if p.endswith("(Amazon VPC)")]

# Pricing operatingSystem value -> price table key, and the RunInstances operation code.
PRICING_OS = [
    ("Linux", "linux", "RunInstances"),
    ("Windows", "windows", "RunInstances:0002"),
    ("RHEL", "rhel", "RunInstances:0010"),
    ("SUSE", "suse", "RunInstances:000g"),
]
ON_DEMAND_TERM = "JRTCKXETXF"
ON_DEMAND_RATE = "6YS6EN2CT7"

# Ages of the two history points of every series; index 0 is the latest.
HISTORY_AGES = [dt.timedelta(minutes=20), dt.timedelta(hours=3)]


# ---------------------------------------------------------------------------------------------
# Deterministic numbers


def _unit(*parts: str) -> float:
    """A stable number in [0, 1) from the parts (same on every run and machine)."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def region_factor(region: str) -> float:
    """us-east-1 is the table itself; every other region is 0% to 24% dearer, stably."""
    if region == "us-east-1":
        return 1.0
    return 1.0 + round(_unit("region", region) * 0.24, 2)


def spot_variation(region: str, az: str, instance_type: str) -> float:
    """About +-15% per (region, AZ, type)."""
    return 0.85 + 0.30 * _unit("spot", region, az, instance_type)


def older_point_change(region: str, az: str, instance_type: str) -> float:
    """The 3-hour-old point differs from the latest by 2% to 6%, up or down."""
    u = _unit("older", region, az, instance_type)
    magnitude = 0.02 + 0.04 * (u * 2 % 1)
    return 1.0 + magnitude if u < 0.5 else 1.0 - magnitude


def sku_for(*parts: str) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    digest = hashlib.sha256("|".join(("sku",) + parts).encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:16])


# ---------------------------------------------------------------------------------------------
# Data


class Data:
    """The bundled price table and what moto knows about regions, AZs and offerings."""

    def __init__(self) -> None:
        with open(PRICES_PATH, encoding="utf-8") as f:
            doc = json.load(f)
        self.prices: dict[str, dict[str, float | None]] = doc["prices"]
        self.price_date: str = doc.get("_meta", {}).get("date", "2023-08-30")
        self.types_info: dict[str, dict[str, Any]] = {}
        try:
            with open(TYPES_PATH, encoding="utf-8") as f:
                for t in json.load(f)["types"]:
                    self.types_info[t["instance_type"]] = t
        except (OSError, ValueError, KeyError):
            pass
        self._lock = threading.Lock()
        self._zones: dict[str, list[tuple[str, str]]] | None = None
        self._offered: dict[str, dict[str, set[str]]] = {}
        self._locations: dict[str, str] | None = None

    def zones(self, region: str) -> list[tuple[str, str]]:
        """(name, id) of the region's AZs, as moto reports them."""
        with self._lock:
            if self._zones is None:
                from moto.ec2.models.availability_zones_and_regions import (
                    RegionsAndZonesBackend,
                )

                self._zones = {
                    r: [(z.name, z.zone_id) for z in zs]
                    for r, zs in RegionsAndZonesBackend.zones.items()
                }
            return self._zones.get(region, [])

    def regions(self) -> list[str]:
        self.zones(DEFAULT_REGION)
        assert self._zones is not None
        return sorted(self._zones)

    def offered(self, region: str, az: str) -> set[str]:
        """Types offered in the AZ per moto's offerings, or every priced type if moto has none."""
        with self._lock:
            if region not in self._offered:
                from moto.ec2.models.instance_types import INSTANCE_TYPE_OFFERINGS

                by_az: dict[str, set[str]] = {}
                for o in INSTANCE_TYPE_OFFERINGS.get("availability-zone", {}).get(region, []):
                    by_az.setdefault(o["Location"], set()).add(o["InstanceType"])
                self._offered[region] = by_az
            by_az = self._offered[region]
        if not by_az:
            return {t for t, p in self.prices.items() if p.get("linux_spot") is not None}
        return by_az.get(az, set())

    def location(self, region: str) -> str:
        with self._lock:
            if self._locations is None:
                import botocore.loaders

                names: dict[str, str] = {}
                for part in botocore.loaders.Loader().load_data("endpoints")["partitions"]:
                    for code, info in part.get("regions", {}).items():
                        desc = info.get("description", code)
                        # The Price List names European regions "EU (...)".
                        if desc.startswith("Europe ("):
                            desc = "EU (" + desc[len("Europe (") :]
                        names[code] = desc
                self._locations = names
            return self._locations.get(region, region)

    def spot_price(self, region: str, az: str, instance_type: str, product: str) -> float | None:
        """The latest spot price of a series, or None if the type has no spot price."""
        p = self.prices.get(instance_type)
        if not p or p.get("linux_spot") is None:
            return None
        os_key = PRODUCT_OS[product]
        factor = region_factor(region)
        price = p["linux_spot"] * spot_variation(region, az, instance_type) * factor
        if os_key != "linux":
            if p.get(os_key) is None or p.get("linux") is None:
                return None
            price += (p[os_key] - p["linux"]) * factor
        return max(price, 0.0001)

    def on_demand(self, region: str, instance_type: str, os_key: str) -> float | None:
        p = self.prices.get(instance_type)
        if not p or p.get(os_key) is None:
            return None
        return p[os_key] * region_factor(region)


class Pins:
    """Spot prices pinned by tests: (region, az, type, product or None) -> price."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pins: dict[tuple[str, str, str, str | None], float] = {}

    def set(self, entries: list[dict[str, Any]]) -> int:
        parsed = []
        for e in entries:
            product = e.get("product_description")
            if product is not None and product not in PRODUCT_OS:
                raise ValueError(f"unknown product_description {product!r}")
            key = (
                str(e["region"]),
                str(e["availability_zone"]),
                str(e["instance_type"]),
                product,
            )
            price = float(e["price"])
            if price <= 0:
                raise ValueError("price must be above zero")
            parsed.append((key, price))
        with self._lock:
            for key, price in parsed:
                self._pins[key] = price
            return len(self._pins)

    def clear(self) -> None:
        with self._lock:
            self._pins.clear()

    def snapshot(self) -> dict[tuple[str, str, str, str | None], float]:
        with self._lock:
            return dict(self._pins)

    def listing(self) -> list[dict[str, Any]]:
        return [
            {
                "region": k[0],
                "availability_zone": k[1],
                "instance_type": k[2],
                "product_description": k[3],
                "price": v,
            }
            for k, v in sorted(self.snapshot().items(), key=lambda kv: str(kv[0]))
        ]

    @staticmethod
    def lookup(
        pins: dict[tuple[str, str, str, str | None], float],
        region: str,
        az: str,
        instance_type: str,
        product: str,
    ) -> float | None:
        exact = pins.get((region, az, instance_type, product))
        if exact is not None:
            return exact
        return pins.get((region, az, instance_type, None))


# ---------------------------------------------------------------------------------------------
# Helpers


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def xml_escape(s: str) -> str:
    return (
        s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&apos;")
    )


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse_time(value: str, name: str) -> dt.datetime:
    v = value.strip()
    try:
        if v.replace(".", "", 1).isdigit():
            return dt.datetime.fromtimestamp(float(v), tz=dt.timezone.utc)
        if v.endswith("Z"):
            v = v[:-1] + "+00:00"
        t = dt.datetime.fromisoformat(v)
    except ValueError:
        raise ApiError(400, "InvalidParameterValue", f"Invalid value '{value}' for {name}")
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t


def encode_token(offset: int, clock: int | None = None) -> str:
    doc: dict[str, int] = {"offset": offset}
    if clock is not None:
        doc["clock"] = clock
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def decode_token(token: str, code: str) -> tuple[int, int | None]:
    """(offset, clock) from an opaque page token."""
    try:
        doc = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = int(doc["offset"])
        clock = int(doc["clock"]) if "clock" in doc else None
        if offset < 0:
            raise ValueError
        return offset, clock
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, code, f"Invalid NextToken: {token}")


def region_from_auth(environ: dict[str, Any]) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    try:
        scope = auth.split(",")[0].split()[1]  # Credential=AKID/DATE/REGION/SERVICE/aws4_request
        return scope.split("/")[2]
    except IndexError:
        return DEFAULT_REGION


def service_from_auth(environ: dict[str, Any]) -> str | None:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    try:
        scope = auth.split(",")[0].split()[1]
        return scope.split("/")[3].lower()
    except IndexError:
        return None


def read_body(environ: dict[str, Any]) -> bytes:
    """Reads the request body and puts it back, so moto can read it again."""
    import io

    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ["wsgi.input"]
    if length > 0:
        body = stream.read(length)
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def indexed(params: dict[str, str], prefix: str) -> list[str]:
    """Values of PREFIX.1, PREFIX.2, ... in index order."""
    found = []
    for key, value in params.items():
        if key.startswith(prefix + "."):
            rest = key[len(prefix) + 1 :]
            if rest.isdigit():
                found.append((int(rest), value))
    return [v for _, v in sorted(found)]


# ---------------------------------------------------------------------------------------------
# DescribeSpotPriceHistory


class RowCache:
    """The full answer of recent DescribeSpotPriceHistory calls, so that paging through a big
    answer computes it once. The page token carries the request's clock, so every page of one
    pagination sees the same history."""

    def __init__(self, size: int = 16) -> None:
        self._lock = threading.Lock()
        self._size = size
        self._rows: dict[Any, list[tuple[int, str, str, str, str, str]]] = {}

    def get(self, key: Any) -> list[tuple[int, str, str, str, str, str]] | None:
        with self._lock:
            return self._rows.get(key)

    def put(self, key: Any, rows: list[tuple[int, str, str, str, str, str]]) -> None:
        with self._lock:
            if len(self._rows) >= self._size:
                self._rows.pop(next(iter(self._rows)))
            self._rows[key] = rows


def describe_spot_price_history(
    data: Data, pins: Pins, cache: RowCache, region: str, params: dict[str, str]
) -> bytes:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    offset = 0
    if params.get("NextToken"):
        offset, clock = decode_token(params["NextToken"], "InvalidNextToken")
        if clock is not None:
            now = dt.datetime.fromtimestamp(clock, tz=dt.timezone.utc)
    types_wanted = set(indexed(params, "InstanceType"))
    products = indexed(params, "ProductDescription")
    filters: dict[str, list[str]] = {}
    filter_names: dict[int, str] = {}
    filter_values: dict[int, list[tuple[int, str]]] = {}
    for key, value in params.items():
        parts = key.split(".")
        if parts[0] != "Filter" or len(parts) < 3 or not parts[1].isdigit():
            continue
        n = int(parts[1])
        if parts[2] == "Name":
            filter_names[n] = value
        elif parts[2] == "Value" and len(parts) == 4 and parts[3].isdigit():
            filter_values.setdefault(n, []).append((int(parts[3]), value))
    for n, name in filter_names.items():
        filters.setdefault(name, []).extend(v for _, v in sorted(filter_values.get(n, [])))
    known_filters = {
        "availability-zone",
        "instance-type",
        "product-description",
        "spot-price",
        "timestamp",
    }
    for name in filters:
        if name not in known_filters:
            raise ApiError(400, "InvalidParameterValue", f"The filter '{name}' is invalid")

    zones = data.zones(region)
    az_names = [z for z, _ in zones]
    az_param = params.get("AvailabilityZone")
    az_id_param = params.get("AvailabilityZoneId")
    if az_param and az_id_param:
        raise ApiError(
            400,
            "InvalidParameterCombination",
            "AvailabilityZone and AvailabilityZoneId cannot both be specified",
        )
    if az_param:
        if az_param not in az_names:
            raise ApiError(
                400, "InvalidParameterValue", f"Invalid availability zone: [{az_param}]"
            )
        az_names = [az_param]
    if az_id_param:
        by_id = {zid: z for z, zid in zones}
        if az_id_param not in by_id:
            raise ApiError(
                400, "InvalidParameterValue", f"Invalid availability zone id: [{az_id_param}]"
            )
        az_names = [by_id[az_id_param]]

    start = parse_time(params["StartTime"], "StartTime") if params.get("StartTime") else None
    end = parse_time(params["EndTime"], "EndTime") if params.get("EndTime") else None
    if start and end and start > end:
        raise ApiError(400, "InvalidParameterValue", "StartTime must be before EndTime")

    try:
        max_results = int(params.get("MaxResults") or 1000)
    except ValueError:
        raise ApiError(400, "InvalidParameterValue", "Invalid value for MaxResults")
    if not 1 <= max_results <= 1000:
        raise ApiError(
            400, "InvalidParameterValue", "MaxResults must be between 1 and 1000"
        )

    pinned = {k: v for k, v in pins.snapshot().items() if k[0] == region}
    cache_key = (
        region,
        int(now.timestamp()),
        tuple(sorted((k, v) for k, v in params.items() if k not in ("NextToken", "MaxResults"))),
        tuple(sorted(pinned.items(), key=lambda kv: str(kv[0]))),
    )
    rows = cache.get(cache_key)
    if rows is None:
        rows = spot_rows(
            data, pinned, region, now, az_names, types_wanted, products, filters, start, end
        )
        cache.put(cache_key, rows)
    page = rows[offset : offset + max_results]
    next_offset = offset + max_results
    next_token = (
        encode_token(next_offset, int(now.timestamp())) if next_offset < len(rows) else None
    )

    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<DescribeSpotPriceHistoryResponse xmlns="{EC2_NS}">',
        f"<requestId>{uuid.uuid4()}</requestId>",
        "<spotPriceHistorySet>",
    ]
    for _, az, itype, product, price, ts_text in page:
        out.append(
            "<item>"
            f"<instanceType>{xml_escape(itype)}</instanceType>"
            f"<productDescription>{xml_escape(product)}</productDescription>"
            f"<spotPrice>{price}</spotPrice>"
            f"<timestamp>{ts_text}</timestamp>"
            f"<availabilityZone>{xml_escape(az)}</availabilityZone>"
            "</item>"
        )
    out.append("</spotPriceHistorySet>")
    out.append(f"<nextToken>{next_token}</nextToken>" if next_token else "<nextToken/>")
    out.append("</DescribeSpotPriceHistoryResponse>")
    return "".join(out).encode()


def spot_rows(
    data: Data,
    pinned: dict[tuple[str, str, str, str | None], float],
    region: str,
    now: dt.datetime,
    az_names: list[str],
    types_wanted: set[str],
    products: list[str],
    filters: dict[str, list[str]],
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> list[tuple[int, str, str, str, str, str]]:
    """Every history point the request asks for, newest first, in a stable order."""
    # EC2 answers no rows for a product it does not know.
    product_list = [p for p in (products or DEFAULT_PRODUCTS) if p in PRODUCT_OS]

    def matches(name: str, value: str) -> bool:
        wanted = filters.get(name)
        return wanted is None or any(fnmatch.fnmatchcase(value, w) for w in wanted)

    points_in_effect = []  # (point index, az, type, product, price, timestamp)
    for az in az_names:
        if not matches("availability-zone", az):
            continue
        candidates = set(data.offered(region, az))
        candidates.update(k[2] for k in pinned if k[1] == az)
        if types_wanted:
            candidates &= types_wanted
        for itype in sorted(candidates):
            if not matches("instance-type", itype):
                continue
            for product in product_list:
                if not matches("product-description", product):
                    continue
                pin = Pins.lookup(pinned, region, az, itype, product)
                if pin is not None:
                    series = [pin, pin]
                else:
                    latest = data.spot_price(region, az, itype, product)
                    if latest is None:
                        continue
                    series = [latest, latest * older_point_change(region, az, itype)]
                stamps = [now - age for age in HISTORY_AGES]
                chosen = []
                for idx in range(len(series)):
                    ts = stamps[idx]
                    if end is not None and ts > end:
                        continue
                    chosen.append(idx)
                if start is not None:
                    after = [i for i in chosen if stamps[i] >= start]
                    before = [i for i in chosen if stamps[i] < start]
                    # The latest point before StartTime is the price in effect at StartTime.
                    if before:
                        after.append(min(before, key=lambda i: now - stamps[i]))
                    chosen = after
                for idx in sorted(chosen):
                    price = f"{series[idx]:.6f}"
                    ts_text = iso(stamps[idx])
                    if not matches("spot-price", price) or not matches("timestamp", ts_text):
                        continue
                    points_in_effect.append((idx, az, itype, product, price, ts_text))
    # Newest first, as EC2 does; the order is stable across pages.
    points_in_effect.sort(key=lambda r: (r[0], r[1], r[2], r[3]))
    return points_in_effect


def ec2_error_xml(err: ApiError) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{xml_escape(err.code)}</Code>"
        f"<Message>{xml_escape(err.message)}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


# ---------------------------------------------------------------------------------------------
# Pricing


FILTER_TYPES = {"TERM_MATCH", "EQUALS", "CONTAINS", "ANY_OF", "NONE_OF"}


def _filter_ok(ftype: str, actual: str | None, value: str) -> bool:
    if ftype in ("TERM_MATCH", "EQUALS"):
        return actual == value
    if actual is None:
        return ftype == "NONE_OF"
    if ftype == "CONTAINS":
        return value in actual
    options = [v.strip() for v in value.split(",")]
    if ftype == "ANY_OF":
        return actual in options
    return actual not in options  # NONE_OF


def pricing_product(
    data: Data, region: str, itype: str, os_name: str, os_key: str, operation: str
) -> dict[str, str]:
    info = data.types_info.get(itype, {})
    usage_prefix = "" if region == "us-east-1" else region.upper().replace("-", "") + "-"
    attrs = {
        "servicecode": "AmazonEC2",
        "servicename": "Amazon Elastic Compute Cloud",
        "productFamily": "Compute Instance",
        "instanceType": itype,
        "instanceFamily": itype.split(".")[0],
        "regionCode": region,
        "location": data.location(region),
        "locationType": "AWS Region",
        "operatingSystem": os_name,
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
        "marketoption": "OnDemand",
        "operation": operation,
        "usagetype": f"{usage_prefix}BoxUsage:{itype}",
        "currentGeneration": "Yes",
    }
    if "vcpus" in info:
        attrs["vcpu"] = str(info["vcpus"])
    if "memory_mib" in info:
        gib = info["memory_mib"] / 1024
        attrs["memory"] = f"{gib:g} GiB"
    return attrs


def get_products(data: Data, body: dict[str, Any]) -> dict[str, Any]:
    service = body.get("ServiceCode")
    if not isinstance(service, str) or not service:
        raise ApiError(400, "InvalidParameterException", "ServiceCode is required")
    fmt = body.get("FormatVersion") or "aws_v1"
    if fmt != "aws_v1":
        raise ApiError(400, "InvalidParameterException", f"Unsupported FormatVersion {fmt}")
    filters = body.get("Filters") or []
    parsed: list[tuple[str, str, str]] = []
    for f in filters:
        if not isinstance(f, dict) or "Field" not in f or "Value" not in f:
            raise ApiError(400, "InvalidParameterException", "Each filter needs Field and Value")
        ftype = f.get("Type", "TERM_MATCH")
        if ftype not in FILTER_TYPES:
            raise ApiError(400, "InvalidParameterException", f"Invalid filter type {ftype}")
        parsed.append((ftype, str(f["Field"]).lower(), str(f["Value"])))
    try:
        max_results = int(body.get("MaxResults") or 100)
    except (TypeError, ValueError):
        raise ApiError(400, "InvalidParameterException", "Invalid MaxResults")
    if not 1 <= max_results <= 100:
        raise ApiError(400, "InvalidParameterException", "MaxResults must be between 1 and 100")
    offset = 0
    if body.get("NextToken"):
        offset, _ = decode_token(body["NextToken"], "InvalidNextTokenException")

    matches: list[tuple[str, str, str, str, str]] = []
    if service == "AmazonEC2":
        # Narrow the cheap dimensions first by exact filters, then check every filter.
        regions = data.regions()
        types = sorted(data.prices)
        for ftype, field, value in parsed:
            if ftype in ("TERM_MATCH", "EQUALS"):
                if field == "regioncode":
                    regions = [r for r in regions if r == value]
                elif field == "instancetype":
                    types = [t for t in types if t == value]
        for region in regions:
            for itype in types:
                for os_name, os_key, operation in PRICING_OS:
                    if data.on_demand(region, itype, os_key) is None:
                        continue
                    attrs = pricing_product(data, region, itype, os_name, os_key, operation)
                    lowered = {k.lower(): v for k, v in attrs.items()}
                    if all(_filter_ok(t, lowered.get(fld), v) for t, fld, v in parsed):
                        matches.append((region, itype, os_name, os_key, operation))

    page = matches[offset : offset + max_results]
    price_list = []
    version = data.price_date.replace("-", "") + "000000"
    publication = data.price_date + "T00:00:00Z"
    for region, itype, os_name, os_key, operation in page:
        attrs = pricing_product(data, region, itype, os_name, os_key, operation)
        sku = sku_for(region, itype, os_name)
        price = data.on_demand(region, itype, os_key)
        assert price is not None
        term = f"{sku}.{ON_DEMAND_TERM}"
        rate = f"{term}.{ON_DEMAND_RATE}"
        item = {
            "product": {
                "productFamily": "Compute Instance",
                "attributes": attrs,
                "sku": sku,
            },
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    term: {
                        "priceDimensions": {
                            rate: {
                                "unit": "Hrs",
                                "endRange": "Inf",
                                "description": (
                                    f"${price:.4f} per On Demand {os_name} {itype} Instance Hour"
                                ),
                                "appliesTo": [],
                                "rateCode": rate,
                                "beginRange": "0",
                                "pricePerUnit": {"USD": f"{price:.10f}"},
                            }
                        },
                        "sku": sku,
                        "effectiveDate": publication,
                        "offerTermCode": ON_DEMAND_TERM,
                        "termAttributes": {},
                    }
                }
            },
            "version": version,
            "publicationDate": publication,
        }
        price_list.append(json.dumps(item, separators=(",", ":")))
    out: dict[str, Any] = {"FormatVersion": "aws_v1", "PriceList": price_list}
    if offset + max_results < len(matches):
        out["NextToken"] = encode_token(offset + max_results)
    return out


def describe_services(body: dict[str, Any]) -> dict[str, Any]:
    code = body.get("ServiceCode")
    services = [
        {
            "ServiceCode": "AmazonEC2",
            "AttributeNames": [
                "instanceType",
                "regionCode",
                "location",
                "operatingSystem",
                "tenancy",
                "preInstalledSw",
                "capacitystatus",
                "licenseModel",
                "marketoption",
                "productFamily",
                "operation",
                "usagetype",
                "vcpu",
                "memory",
            ],
        }
    ]
    if code:
        services = [s for s in services if s["ServiceCode"] == code]
    return {"Services": services, "FormatVersion": "aws_v1"}


# ---------------------------------------------------------------------------------------------
# Auto Scaling DescribeInstanceRefreshes (moto 5.2.5 has no instance refreshes: HTTP 500)

ASG_NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
REFRESH_STATUSES = {
    "Pending",
    "InProgress",
    "Successful",
    "Failed",
    "Cancelling",
    "Cancelled",
    "RollbackInProgress",
    "RollbackFailed",
    "RollbackSuccessful",
    "Baking",
}


class Refreshes:
    """Instance refreshes set by tests: (region, group) -> (status, start time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refreshes: dict[tuple[str, str], tuple[str, dt.datetime]] = {}

    def set(self, entries: list[dict[str, Any]]) -> int:
        parsed = []
        for e in entries:
            status = str(e["status"])
            if status not in REFRESH_STATUSES:
                raise ValueError(f"unknown instance refresh status {status!r}")
            parsed.append(((str(e["region"]), str(e["group"])), status))
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        with self._lock:
            for key, status in parsed:
                self._refreshes[key] = (status, now)
            return len(self._refreshes)

    def clear(self) -> None:
        with self._lock:
            self._refreshes.clear()

    def get(self, region: str, group: str) -> tuple[str, dt.datetime] | None:
        with self._lock:
            return self._refreshes.get((region, group))

    def listing(self) -> list[dict[str, str]]:
        with self._lock:
            return [
                {"region": r, "group": g, "status": st}
                for (r, g), (st, _) in sorted(self._refreshes.items())
            ]


def describe_instance_refreshes(refreshes: Refreshes, region: str, params: dict[str, str]) -> bytes:
    """Lists the refresh a test set for the group, or none: what AWS answers for a group that
    was never refreshed."""
    group = params.get("AutoScalingGroupName", "")
    if not group:
        raise ApiError(400, "ValidationError", "AutoScalingGroupName is required")
    found = refreshes.get(region, group)
    wanted_ids = indexed(params, "InstanceRefreshIds.member")
    items = []
    if found is not None:
        status, started = found
        refresh_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"refresh/{region}/{group}"))
        if not wanted_ids or refresh_id in wanted_ids:
            items.append(
                "<member>"
                f"<InstanceRefreshId>{refresh_id}</InstanceRefreshId>"
                f"<AutoScalingGroupName>{xml_escape(group)}</AutoScalingGroupName>"
                f"<Status>{status}</Status>"
                f"<StartTime>{iso(started)}</StartTime>"
                "<PercentageComplete>0</PercentageComplete>"
                "<InstancesToUpdate>0</InstancesToUpdate>"
                "</member>"
            )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<DescribeInstanceRefreshesResponse xmlns="{ASG_NS}">'
        "<DescribeInstanceRefreshesResult>"
        f"<InstanceRefreshes>{''.join(items)}</InstanceRefreshes>"
        "</DescribeInstanceRefreshesResult>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        "</DescribeInstanceRefreshesResponse>"
    ).encode()


def asg_error_xml(err: ApiError) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ErrorResponse xmlns="{ASG_NS}"><Error><Type>Sender</Type>'
        f"<Code>{xml_escape(err.code)}</Code><Message>{xml_escape(err.message)}</Message>"
        f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()


# ---------------------------------------------------------------------------------------------
# Throttling


class Throttling:
    """A share of API calls answered as AWS answers a caller past its request bucket."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rate = 0.0
        self.rng = random.Random(0)
        self.throttled: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def set(self, doc: Any) -> int:
        if not isinstance(doc, dict) or not isinstance(doc.get("rate"), (int, float)):
            raise ValueError('expected {"rate": 0.3, "seed": 7}')
        rate = float(doc["rate"])
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate is a share from 0 to 1")
        with self.lock:
            self.rate = rate
            self.rng = random.Random(int(doc.get("seed", 0)))
            self.throttled.clear()
            self.calls.clear()
        return 1

    def clear(self) -> None:
        self.set({"rate": 0})

    def listing(self) -> dict[str, Any]:
        with self.lock:
            return {"rate": self.rate, "calls": dict(self.calls), "throttled": dict(self.throttled)}

    def hit(self, service: str) -> bool:
        with self.lock:
            self.calls[service] = self.calls.get(service, 0) + 1
            if self.rate > 0 and self.rng.random() < self.rate:
                self.throttled[service] = self.throttled.get(service, 0) + 1
                return True
            return False


def throttled_response(service: str) -> tuple[int, bytes, str]:
    """The answer AWS gives a throttled call of `service`: status, body, content type."""
    if service == "pricing":
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
        return 400, body.encode(), "application/x-amz-json-1.1"
    if service == "autoscaling":
        err = ApiError(400, "Throttling", "Rate exceeded")
        return 400, asg_error_xml(err), "text/xml"
    err = ApiError(503, "RequestLimitExceeded", "Request limit exceeded.")
    return 503, ec2_error_xml(err), "text/xml"


# ---------------------------------------------------------------------------------------------
# The middleware


class Emulator:
    """WSGI middleware in front of moto's app."""

    def __init__(self, moto_app: Callable[..., Iterable[bytes]]):
        self.moto_app = moto_app
        self.data = Data()
        self.pins = Pins()
        self.spot_cache = RowCache()
        self.refreshes = Refreshes()
        self.throttling = Throttling()

    @staticmethod
    def _respond(
        start_response: Any, status: int, body: bytes, content_type: str
    ) -> list[bytes]:
        reason = {
            200: "OK",
            400: "Bad Request",
            404: "Not Found",
            405: "Method Not Allowed",
            503: "Service Unavailable",
        }
        start_response(
            f"{status} {reason.get(status, 'Error')}",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("x-amzn-RequestId", str(uuid.uuid4())),
            ],
        )
        return [body]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path.rstrip("/") == "/_spotswap/spot-prices":
            return self._control(environ, start_response, method, self.pins)
        if path.rstrip("/") == "/_spotswap/instance-refreshes":
            return self._control(environ, start_response, method, self.refreshes)
        if path.rstrip("/") == "/_spotswap/throttling":
            return self._control(environ, start_response, method, self.throttling)

        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if self.throttling.rate > 0:
            service = "pricing" if target.startswith("AWSPriceListService.") else service_from_auth(environ)
            if service and self.throttling.hit(service):
                status, body, ctype = throttled_response(service)
                return self._respond(start_response, status, body, ctype)
        if target.startswith("AWSPriceListService."):
            return self._pricing(environ, start_response, target.split(".", 1)[1])

        content_type = environ.get("CONTENT_TYPE", "")
        if method == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
            body = read_body(environ)
            if b"DescribeSpotPriceHistory" in body or b"DescribeInstanceRefreshes" in body:
                params = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
                action = params.get("Action")
                service = service_from_auth(environ)
                if action == "DescribeSpotPriceHistory" and service in (None, "ec2"):
                    return self._spot(environ, start_response, params)
                if action == "DescribeInstanceRefreshes" and service in (None, "autoscaling"):
                    return self._refreshes(environ, start_response, params)
        elif method == "GET" and "DescribeSpotPriceHistory" in environ.get("QUERY_STRING", ""):
            params = dict(urllib.parse.parse_qsl(environ["QUERY_STRING"], keep_blank_values=True))
            if params.get("Action") == "DescribeSpotPriceHistory":
                return self._spot(environ, start_response, params)
        return self.moto_app(environ, start_response)

    def _spot(self, environ: dict[str, Any], start_response: Any, params: dict[str, str]):
        region = region_from_auth(environ)
        try:
            body = describe_spot_price_history(
                self.data, self.pins, self.spot_cache, region, params
            )
        except ApiError as err:
            return self._respond(start_response, err.status, ec2_error_xml(err), "text/xml")
        return self._respond(start_response, 200, body, "text/xml;charset=UTF-8")

    def _refreshes(self, environ: dict[str, Any], start_response: Any, params: dict[str, str]):
        region = region_from_auth(environ)
        try:
            body = describe_instance_refreshes(self.refreshes, region, params)
        except ApiError as err:
            return self._respond(start_response, err.status, asg_error_xml(err), "text/xml")
        return self._respond(start_response, 200, body, "text/xml")

    def _pricing(self, environ: dict[str, Any], start_response: Any, op: str):
        ctype = "application/x-amz-json-1.1"
        try:
            raw = read_body(environ)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise ApiError(400, "SerializationException", "Request body is not valid JSON")
            if not isinstance(body, dict):
                raise ApiError(400, "SerializationException", "Request body must be an object")
            if op == "GetProducts":
                out = get_products(self.data, body)
            elif op == "DescribeServices":
                out = describe_services(body)
            else:
                raise ApiError(400, "UnknownOperationException", f"Unknown operation {op}")
        except ApiError as err:
            payload = json.dumps({"__type": err.code, "Message": err.message}).encode()
            return self._respond(start_response, err.status, payload, ctype)
        return self._respond(start_response, 200, json.dumps(out).encode(), ctype)

    def _control(self, environ: dict[str, Any], start_response: Any, method: str, store: Any):
        """Test control: POST a list of entries to set them, {"clear": true} to forget them
        all; GET lists them."""
        ctype = "application/json"
        if method == "GET":
            return self._respond(start_response, 200, json.dumps(store.listing()).encode(), ctype)
        if method != "POST":
            return self._respond(start_response, 405, b'{"error":"GET or POST"}', ctype)
        try:
            doc = json.loads(read_body(environ) or b"null")
            if isinstance(doc, dict) and doc.get("clear") is True:
                store.clear()
                count = 0
            elif isinstance(doc, list) or (isinstance(doc, dict) and isinstance(store, Throttling)):
                count = store.set(doc)
            else:
                raise ValueError('expected a list of entries or {"clear": true}')
        except (ValueError, KeyError, TypeError) as err:
            payload = json.dumps({"error": str(err)}).encode()
            return self._respond(start_response, 400, payload, ctype)
        return self._respond(start_response, 200, json.dumps({"count": count}).encode(), ctype)


# ---------------------------------------------------------------------------------------------
# moto fixes: only where moto 5.2.5 fails a call that AWS answers, never to change what AWS does


def patch_moto() -> None:
    """CreateLaunchTemplateVersion in moto 5.2.5 ignores `SourceVersion` (the new version holds
    only the data given, so an instance launched from it gets moto's default type and no AMI)
    and stores its `UserData` as a plain string, which makes every Auto Scaling launch and every
    CreateFleet from that version fail with an HTTP 500 (AssertionError in moto). AWS bases the
    new version on the source version, the given top-level fields replacing the source's. This
    replaces moto's handler with one that does that."""
    import copy

    from moto.core.responses import ActionResult
    from moto.ec2.responses.launch_templates import LaunchTemplates
    from moto.ec2.utils import parse_user_data

    def create_launch_template_version(self: Any) -> Any:
        name = self._get_param("LaunchTemplateName")
        tmpl_id = self._get_param("LaunchTemplateId")
        if tmpl_id:
            template = self.ec2_backend.get_launch_template(tmpl_id)
        else:
            template = self.ec2_backend.get_launch_template_by_name(name)
        version_description = self._get_param("VersionDescription")
        given = self._get_param("LaunchTemplateData", {})
        if "UserData" in given:
            given["UserData"] = parse_user_data(self._get_param("LaunchTemplateData.UserData"))
        source = self._get_param("SourceVersion")
        if source:
            data = copy.deepcopy(template.get_version(source).data)
            data.update(given)
        else:
            data = given
        self.error_on_dryrun()
        version = template.create_version(data, version_description)
        return ActionResult(
            {
                "LaunchTemplateVersion": {
                    "CreateTime": version.create_time,
                    "CreatedBy": f"arn:{self.partition}:iam::{self.current_account}:root",
                    "DefaultVersion": template.is_default(version),
                    "LaunchTemplateData": version.data,
                    "LaunchTemplateId": template.id,
                    "LaunchTemplateName": template.name,
                    "VersionDescription": version.description,
                    "VersionNumber": version.number,
                }
            }
        )

    LaunchTemplates.create_launch_template_version = create_launch_template_version


# ---------------------------------------------------------------------------------------------
# Start-up


def build_app() -> Emulator:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    moto_app = DomainDispatcherApplication(create_backend_app)
    return Emulator(moto_app)


def prewarm(app: Emulator) -> None:
    """Imports and builds what the first EC2, Auto Scaling and IAM calls would otherwise pay for."""
    moto_app = app.moto_app
    hosts = (
        "ec2.us-east-1.amazonaws.com",
        "autoscaling.us-east-1.amazonaws.com",
        "iam.amazonaws.com",
    )
    for host in hosts:
        backend = moto_app.get_backend_for_host(host)  # type: ignore[attr-defined]
        if backend and backend not in moto_app.app_instances:  # type: ignore[attr-defined]
            with moto_app.lock:  # type: ignore[attr-defined]
                app_instances = moto_app.app_instances  # type: ignore[attr-defined]
                app_instances[backend] = moto_app.create_app(backend)  # type: ignore[attr-defined]
    app.data.zones(DEFAULT_REGION)
    app.data.offered(DEFAULT_REGION, DEFAULT_REGION + "a")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="only 127.0.0.1 is allowed")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--no-prewarm", action="store_true", help="import moto's services lazily")
    args = parser.parse_args(argv)
    if args.host != "127.0.0.1":
        parser.error("the emulator binds 127.0.0.1 only")

    # The main thread only waits for a signal; the server runs in a thread, so a signal can
    # never land in the middle of serving or start-up code.
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)

    from werkzeug.serving import make_server
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    app = build_app()
    patch_moto()
    if not args.no_prewarm:
        prewarm(app)
    server = make_server(
        "127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    port = server.socket.getsockname()[1]
    os.environ.setdefault("MOTO_PORT", str(port))
    if stopping.is_set():
        server.server_close()
        return 0
    serving = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    serving.start()
    print(f"spotswap-emulator listening on http://127.0.0.1:{port}", flush=True)
    while not stopping.wait(0.5):
        if not serving.is_alive():
            return 1
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

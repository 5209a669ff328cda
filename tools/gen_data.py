#!/usr/bin/env python3
"""Generate spotswap's bundled data files from their pinned sources.

Usage (what `make data` runs):

    python3 tools/gen_data.py --moto-resources DIR \
        --prices-tsv data/source/ec2-prices-us-east-1-2023-08.tsv --out data

DIR is the `moto/ec2/resources` folder of moto 5.2.5 installed from PyPI (the Makefile finds it in
the project's .venv). This script is stdlib only (Python 3.11) and deterministic: the output
depends on the two inputs and nothing else (no clock, no environment, sorted keys and rows).

It writes:

- OUT/instance-types.json: every DescribeInstanceTypes entry of moto's dump, converted to the
  shape of `spotswap::model::InstanceTypeSpec`, sorted by name, one type per line.
- OUT/prices-us-east-1.json: the us-east-1 price table of August 2023, one type per line, sorted.
  Types absent from the catalog are left out (printed on stdout): a price without a spec cannot
  be used. An empty cell, and a Linux spot price equal to the Linux on-demand price (the source
  had no spot data), become null: an unknown price is never zero.

Any value the Rust model cannot represent (a new architecture, boot mode, ...) stops the script
with an error rather than being dropped silently.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import sys
from pathlib import Path

# The moto release the bundled catalog is generated from (pinned in the Makefile), and the date
# its wheel on PyPI was built (the timestamps inside moto-5.2.5-py3-none-any.whl). The installed
# files carry no trustworthy date, so the date is recorded here next to the pin.
PINNED_MOTO_VERSION = "5.2.5"
MOTO_WHEEL_DATES = {"5.2.5": "2026-10-27"}

PRICE_REGION = "us-east-1"
PRICE_DATE = "2023-08-30"
PRICE_COLUMNS = [
    "# instance_type",
    "linux_on_demand",
    "windows_on_demand",
    "rhel_on_demand",
    "sles_on_demand",
    "linux_spot",
    "ebs_optimized_surcharge",
]

# Enum spellings of src/model.rs (serde names).
ARCHITECTURES = {"i386", "x86_64", "arm64", "x86_64_mac", "arm64_mac"}
VIRTUALIZATIONS = {"hvm", "paravirtual"}
BOOT_MODES = {"legacy-bios", "uefi"}
ENA = {"unsupported", "supported", "required"}
DISK_TYPES = {"ssd", "hdd"}
NVME = {"required": True, "supported": True, "unsupported": False}
EBS_OPTIMIZED = {"unsupported", "supported", "default"}
NITRO_ENCLAVES = {"supported": True, "unsupported": False}

# NeuronInfo states no manufacturer; Inferentia and Trainium are AWS's own chips.
NEURON_MANUFACTURER = "AWS"


class DataError(Exception):
    pass


def fail(instance_type: str, message: str) -> DataError:
    return DataError(f"{instance_type}: {message}")


def one_of(instance_type: str, what: str, value: object, allowed: set[str]) -> str:
    if value not in allowed:
        raise fail(instance_type, f"unknown {what} {value!r} (known: {sorted(allowed)})")
    return value  # type: ignore[return-value]


def non_negative_int(instance_type: str, what: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise fail(instance_type, f"{what} is {value!r}, not a non-negative integer")
    return value


def moto_version(resources: Path) -> str:
    init = resources.resolve().parents[1] / "__init__.py"
    try:
        text = init.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot read {init} to find moto's version: {e}") from e
    m = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.MULTILINE)
    if not m:
        raise DataError(f"no __version__ in {init}")
    return m.group(1)


def gpu_specs(name: str, raw: dict) -> list[dict]:
    out = []
    for g in raw.get("GpuInfo", {}).get("Gpus", []):
        count = non_negative_int(name, "GPU count", g.get("Count"))
        if count == 0:
            # Fractional GPUs (g6f, gr6f): Count is 0, LogicalGpuCount 1 and GpuPartitionSize
            # below 1. The instance sees one GPU with the partition's memory; recording 0 would
            # make a GPU type look GPU-less.
            count = non_negative_int(name, "logical GPU count", g.get("LogicalGpuCount"))
        if count == 0:
            raise fail(name, f"GPU entry with no GPU: {g}")
        out.append(
            {
                "manufacturer": g["Manufacturer"],
                "name": g["Name"],
                "count": count,
                # Per GPU, as the API states it.
                "memory_mib": non_negative_int(name, "GPU memory", g["MemoryInfo"]["SizeInMiB"]),
            }
        )
    return out


def accelerator_specs(name: str, raw: dict) -> list[dict]:
    sources = [
        ("inference", "InferenceAcceleratorInfo", "Accelerators"),
        ("neuron", "NeuronInfo", "NeuronDevices"),
        ("fpga", "FpgaInfo", "Fpgas"),
        ("media", "MediaAcceleratorInfo", "Accelerators"),
    ]
    out = []
    for kind, info_key, list_key in sources:
        for a in raw.get(info_key, {}).get(list_key, []):
            manufacturer = a.get("Manufacturer")
            if manufacturer is None and kind == "neuron":
                manufacturer = NEURON_MANUFACTURER
            if not manufacturer:
                raise fail(name, f"{info_key} entry without a manufacturer: {a}")
            memory = a.get("MemoryInfo", {}).get("SizeInMiB", 0)
            out.append(
                {
                    "kind": kind,
                    "manufacturer": manufacturer,
                    "name": a["Name"],
                    "count": non_negative_int(name, f"{info_key} count", a.get("Count")),
                    # Per device.
                    "memory_mib": non_negative_int(name, f"{info_key} memory", memory),
                }
            )
    return out


def storage_spec(name: str, raw: dict) -> dict | None:
    info = raw.get("InstanceStorageInfo")
    if info is None:
        return None
    disks = [
        {
            "count": non_negative_int(name, "disk count", d["Count"]),
            "size_gb": non_negative_int(name, "disk size", d["SizeInGB"]),
            "type": one_of(name, "disk type", d["Type"], DISK_TYPES),
        }
        for d in info["Disks"]
    ]
    nvme = NVME.get(info.get("NvmeSupport"))
    if nvme is None:
        raise fail(name, f"unknown NvmeSupport {info.get('NvmeSupport')!r}")
    total = non_negative_int(name, "TotalSizeInGB", info["TotalSizeInGB"])
    if total != sum(d["count"] * d["size_gb"] for d in disks):
        print(f"note: {name}: TotalSizeInGB {total} is not the sum of its disks", file=sys.stderr)
    return {"disks": disks, "nvme": nvme, "total_gb": total}


def instance_type_spec(name: str, raw: dict) -> dict:
    if raw.get("InstanceType") != name:
        raise fail(name, f"keyed as {name!r} but InstanceType is {raw.get('InstanceType')!r}")
    architectures = sorted(
        one_of(name, "architecture", a, ARCHITECTURES)
        for a in raw["ProcessorInfo"]["SupportedArchitectures"]
    )
    virtualization = sorted(
        one_of(name, "virtualization type", v, VIRTUALIZATIONS)
        for v in raw["SupportedVirtualizationTypes"]
    )
    boot_modes = sorted(one_of(name, "boot mode", b, BOOT_MODES) for b in raw["SupportedBootModes"])
    if not architectures or not virtualization or not boot_modes:
        raise fail(name, "no architecture, virtualization type or boot mode")

    spec: dict = {
        "instance_type": name,
        "vcpus": non_negative_int(name, "vCPUs", raw["VCpuInfo"]["DefaultVCpus"]),
        "memory_mib": non_negative_int(name, "memory", raw["MemoryInfo"]["SizeInMiB"]),
        "architectures": architectures,
        "virtualization_types": virtualization,
        "boot_modes": boot_modes,
        "ena": one_of(name, "ENA support", raw["NetworkInfo"]["EnaSupport"], ENA),
        "burstable": bool(raw["BurstablePerformanceSupported"]),
        "bare_metal": bool(raw["BareMetal"]),
        "current_generation": bool(raw["CurrentGeneration"]),
        "spot_supported": "spot" in raw["SupportedUsageClasses"],
    }
    # The rest are #[serde(default)] in the model: left out when empty or unknown.
    gpus = gpu_specs(name, raw)
    if gpus:
        spec["gpus"] = gpus
    accelerators = accelerator_specs(name, raw)
    if accelerators:
        spec["accelerators"] = accelerators
    storage = storage_spec(name, raw)
    if storage is not None:
        spec["instance_storage"] = storage
    ebs = raw.get("EbsInfo", {}).get("EbsOptimizedInfo", {}).get("BaselineBandwidthInMbps")
    if ebs is not None:
        spec["ebs_baseline_mbps"] = non_negative_int(name, "EBS baseline", ebs)
    cards = raw.get("NetworkInfo", {}).get("NetworkCards", [])
    if cards and cards[0].get("BaselineBandwidthInGbps") is not None:
        gbps = cards[0]["BaselineBandwidthInGbps"]
        if not isinstance(gbps, (int, float)) or isinstance(gbps, bool) or gbps < 0:
            raise fail(name, f"network baseline {gbps!r}")
        spec["network_baseline_gbps"] = float(gbps)
    # Launch settings only some types accept (spotswap's hibernation, ebs-optimized,
    # nitro-enclaves and cpu-options checks). Left out where the dump does not say: unknown,
    # which the model never takes for "unsupported".
    if raw.get("HibernationSupported") is not None:
        spec["hibernation_supported"] = bool(raw["HibernationSupported"])
    ebs_support = raw.get("EbsInfo", {}).get("EbsOptimizedSupport")
    if ebs_support is not None:
        spec["ebs_optimized_support"] = one_of(
            name, "EbsOptimizedSupport", ebs_support, EBS_OPTIMIZED
        )
    enclaves = raw.get("NitroEnclavesSupport")
    if enclaves is not None:
        spec["nitro_enclaves_supported"] = NITRO_ENCLAVES[
            one_of(name, "NitroEnclavesSupport", enclaves, set(NITRO_ENCLAVES))
        ]
    cpu_options = (("ValidCores", "valid_cores"), ("ValidThreadsPerCore", "valid_threads_per_core"))
    for key, field in cpu_options:
        values = raw["VCpuInfo"].get(key) or []
        if values:
            spec[field] = sorted(non_negative_int(name, key, v) for v in values)
    return spec


def compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(", ", ": "))


def document(meta: dict, key: str, lines: list[str], brackets: str) -> str:
    """A JSON object {_meta, key: [...] or {...}} with one entry per line."""
    meta_text = json.dumps(meta, ensure_ascii=True, indent=2).replace("\n", "\n  ")
    body = ",\n".join("    " + line for line in lines)
    return f'{{\n  "_meta": {meta_text},\n  "{key}": {brackets[0]}\n{body}\n  {brackets[1]}\n}}\n'


def price_cell(name: str, column: str, text: str) -> float | None:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError as e:
        raise fail(name, f"{column} {text!r} is not a number") from e
    if value < 0 or value != value:
        raise fail(name, f"{column} {text!r} is not a price")
    return value


def read_prices(path: Path) -> list[tuple[str, dict]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t") != PRICE_COLUMNS:
        raise DataError(f"{path}: header is not {PRICE_COLUMNS}")
    rows = []
    seen = set()
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != len(PRICE_COLUMNS):
            raise DataError(f"{path}:{number}: {len(cells)} cells, expected {len(PRICE_COLUMNS)}")
        name = cells[0]
        if not name or name in seen:
            raise DataError(f"{path}:{number}: empty or repeated instance type {name!r}")
        seen.add(name)
        linux, windows, rhel, suse, spot, surcharge = (
            price_cell(name, column, cell) for column, cell in zip(PRICE_COLUMNS[1:], cells[1:])
        )
        for column, value in zip(PRICE_COLUMNS[1:5], (linux, windows, rhel, suse)):
            if value == 0:
                raise fail(name, f"{column} is 0: an on-demand price of zero is not a price")
        if spot is not None and spot == linux:
            # The source repeats the on-demand price where it had no spot data.
            spot = None
        if spot == 0:
            spot = None
        rows.append(
            (
                name,
                {
                    "linux": linux,
                    "windows": windows,
                    "rhel": rhel,
                    "suse": suse,
                    "linux_spot": spot,
                    "ebs_optimized_surcharge": surcharge,
                },
            )
        )
    return sorted(rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moto-resources", required=True, type=Path,
                        help="the installed moto/ec2/resources folder")
    parser.add_argument("--prices-tsv", required=True, type=Path,
                        help="data/source/ec2-prices-us-east-1-2023-08.tsv")
    parser.add_argument("--out", required=True, type=Path, help="the data/ folder to write")
    parser.add_argument("--any-moto-version", action="store_true",
                        help=f"accept a moto other than the pinned {PINNED_MOTO_VERSION}")
    args = parser.parse_args(argv)

    version = moto_version(args.moto_resources)
    if version != PINNED_MOTO_VERSION and not args.any_moto_version:
        raise DataError(
            f"moto {version} found, the catalog is pinned to {PINNED_MOTO_VERSION} "
            "(install the pinned version, or pass --any-moto-version and update the pin)"
        )

    # Instance types.
    gz_path = args.moto_resources / "instance_types.json.gz"
    gz_bytes = gz_path.read_bytes()
    raw_types = json.loads(gzip.decompress(gz_bytes))
    if not isinstance(raw_types, dict) or not raw_types:
        raise DataError(f"{gz_path}: expected a non-empty object keyed by instance type")
    specs = [instance_type_spec(name, raw_types[name]) for name in sorted(raw_types)]
    wheel_date = MOTO_WHEEL_DATES.get(version, "unknown")
    types_meta = {
        "summary": (
            f"DescribeInstanceTypes dump shipped in moto {version} from PyPI "
            f"(wheel built {wheel_date}), {len(specs)} instance types"
        ),
        "source": "moto (PyPI), file moto/ec2/resources/instance_types.json.gz",
        "source_sha256": hashlib.sha256(gz_bytes).hexdigest(),
        "moto_version": version,
        "moto_wheel_date": wheel_date,
        "licence": "moto is Apache-2.0; the facts come from the AWS EC2 DescribeInstanceTypes API",
        "format": "one spotswap::model::InstanceTypeSpec per line, sorted by instance_type",
        "count": len(specs),
        "regenerate": "make data (runs tools/gen_data.py); do not edit by hand",
    }
    types_text = document(types_meta, "types", [compact(s) for s in specs], "[]")

    # Prices.
    catalog = {s["instance_type"] for s in specs}
    tsv_bytes = args.prices_tsv.read_bytes()
    all_prices = read_prices(args.prices_tsv)
    kept = [(name, row) for name, row in all_prices if name in catalog]
    left_out = [name for name, _ in all_prices if name not in catalog]
    prices_meta = {
        "region": PRICE_REGION,
        "date": PRICE_DATE,
        "source": (
            "ec2instances.info data as published in LeanerCloud/ec2-instances-info, "
            f"file generated_instances_data.txt, last updated {PRICE_DATE}"
        ),
        "source_file": f"data/source/{args.prices_tsv.name}",
        "source_sha256": hashlib.sha256(tsv_bytes).hexdigest(),
        "licence": "public domain / Unlicense",
        "units": "USD per hour",
        "format": (
            "instance type -> on-demand linux, windows, rhel, suse; linux_spot (a snapshot); "
            "ebs_optimized_surcharge. null is unknown, never zero."
        ),
        "count": len(kept),
        "left_out": left_out,
        "regenerate": "make data (runs tools/gen_data.py); do not edit by hand",
    }
    price_lines = [f"{json.dumps(name)}: {compact(row)}" for name, row in kept]
    prices_text = document(prices_meta, "prices", price_lines, "{}")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "instance-types.json").write_text(types_text, encoding="utf-8", newline="\n")
    (args.out / f"prices-{PRICE_REGION}.json").write_text(
        prices_text, encoding="utf-8", newline="\n"
    )

    print(f"moto {version}: wrote {len(specs)} instance types to {args.out / 'instance-types.json'}")
    print(
        f"{PRICE_REGION} {PRICE_DATE}: wrote {len(kept)} of {len(all_prices)} priced types to "
        f"{args.out / f'prices-{PRICE_REGION}.json'}"
    )
    if left_out:
        print(f"left out {len(left_out)} priced types absent from the catalog (no spec):")
        for name in left_out:
            print(f"  {name}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except DataError as e:
        print(f"gen_data: {e}", file=sys.stderr)
        sys.exit(1)

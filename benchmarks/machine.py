"""What a benchmark records about the machine it ran on: one reader of /proc/cpuinfo for every script here."""
from __future__ import annotations
import platform

BF16_FLAGS = ("avx512_bf16", "amx_bf16") # the CPU instructions that make bf16 matrix products fast

def cpuinfo(key: str) -> str|None:
    "The first value of `key` in /proc/cpuinfo (None elsewhere)."
    try: return next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.split(":")[0].strip() == key), None)
    except OSError: return None

def cpu_model() -> str:
    "The CPU's model name with its family and model numbers (machines of one name differ in what they have)."
    return f"{cpuinfo('model name') or platform.processor()} (family {cpuinfo('cpu family')}, model {cpuinfo('model')})"

def bf16_flags() -> list[str]:
    "The bf16 instructions this CPU reports ([] when it has none)."
    flags = set((cpuinfo("flags") or "").split())
    return [f for f in BF16_FLAGS if f in flags]

def cpu_summary() -> str:
    "One line for a record: the model and its bf16 instructions."
    return f"{cpu_model()} ({', '.join(bf16_flags()) or 'no bf16 instructions'})"

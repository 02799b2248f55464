"""The mining benchmarks of one run, side by side: runs each part as its own process (so their memory
and thread settings do not mix) and ends with one JSON line combining their figures and targets.

  bench/mining_pass.py      top-activation pass vs a plain forward; peak memory 10k vs 1k patches
  bench/mining_training.py  training loop vs a bare torch loop on the same tensors
  bench/mining_shards.py    sharded mining on 2 worker processes vs 1 (one thread each)

Run: .venv/bin/python bench/mining.py  (about 30 minutes on 2 cores)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("mining_pass.py", "mining_training.py", "mining_shards.py")


def run_part(script: str) -> dict:
    completed = subprocess.run([sys.executable, str(HERE / script)], capture_output=True, text=True, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    for line in lines[:-1]:
        print(line)
    if completed.returncode != 0 or not lines:
        print(completed.stderr[-3000:], file=sys.stderr)
        return {"bench": script, "figures": {}, "targets": {}, "met": False}
    return json.loads(lines[-1])


def main() -> None:
    figures: dict[str, object] = {}
    targets: dict[str, object] = {}
    met = True
    for script in PARTS:
        print(f"\n=== {script} ===")
        result = run_part(script)
        figures.update({f"{result['bench']}.{k}": v for k, v in result["figures"].items()})
        targets.update({f"{result['bench']}.{k}": v for k, v in result["targets"].items()})
        met = met and bool(result["met"])
    print(json.dumps({"bench": "mining", "figures": figures, "targets": targets, "met": met}))


if __name__ == "__main__":
    main()

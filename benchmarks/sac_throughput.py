"""SAC train throughput in the Playground DM Control SAC configuration.

Same as `mjxmbrl bench sac`; appends the markdown report to docs/benchmarks.md:

    python benchmarks/sac_throughput.py [--quick]
"""

import argparse
from pathlib import Path

from mjxmbrl.cli.bench import bench_sac

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    print(bench_sac(quick=args.quick, out=args.out))

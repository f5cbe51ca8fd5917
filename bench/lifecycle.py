"""Issue 17's benchmark in one command: a retention pass, garbage collection, replication lag.

The three parts live in ``bench/lifecycle_retention.py`` (a pass over 100,000 distributions,
and the index hot path while it runs), ``bench/lifecycle_gc.py`` (``packyard gc`` over
1,000,000 blobs on the local backend and 100,000 on S3: time and peak RSS) and
``bench/lifecycle_replication.py`` (Litestream's lag behind a steady 10 uploads/s); each also
runs alone. This runs all three with their defaults (or their quick sizes) and exits 1 when
any missed a goal or failed.

    python -m bench.lifecycle            # full: ~1 h on 2 shared cores, mostly making the stores
    python -m bench.lifecycle --quick    # 10,000 distributions; gc over 20,000 local, 5,000 S3 blobs; 15 s of uploads
"""

from __future__ import annotations

import sys

from bench import lifecycle_gc, lifecycle_replication, lifecycle_retention
from bench.common import new_parser


def main(argv: list[str] | None = None) -> int:
    parser = new_parser("bench.lifecycle", __doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, while developing")
    args = parser.parse_args(argv)
    retention = lifecycle_retention.main(["--quick"] if args.quick else [])
    gc = lifecycle_gc.main(["--local", "20000", "--s3", "5000"] if args.quick else [])
    replication = lifecycle_replication.main(["--quick"] if args.quick else [])
    return 1 if retention or gc or replication else 0


if __name__ == "__main__":
    sys.exit(main())

"""``esg profile``: measure function profiles (SPEC §1) on this machine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..limits import flag
from ..loaders import LoadError
from ..runtime.settings import SHARE_MECHANISMS

DESCRIPTION = """\
Measure how long each function takes per batch at each batch size and
share, on this machine, and write a profiles file (SPEC §1). A batch is what
the runtime runs: Open Inference Protocol requests with binary tensors
through the handler's infer where it offers V2 samples, else handle_batch on
JSON bodies. Every (function, share) runs in a fresh process that applies
the share before the framework initialises (CPU: the share of the cores sets
torch's threads; GPU: a memory fraction, and the kernels limited by MPS or by
a green context of the share's SMs, see --share-mechanism). Each batch size is
timed --repetitions times after --warmup runs; the profile keeps the median,
and the raw timings ride along under raw_latency_ms."""


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("profile", help="measure function profiles on this machine", description=DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--functions", required=True, metavar="DIR",
                   help="a handler folder (e.g. functions/dnn) or a folder of them")
    p.add_argument("--names", metavar="A,B", help="which functions (default: every one found)")
    p.add_argument("--batch-sizes", type=_int_list, default=[1, 2, 4, 8], metavar="1,2,4,8")
    p.add_argument("--shares", type=_int_list, default=[50, 100], metavar="50,100",
                   help="shares in percent (default 50,100)")
    p.add_argument("--repetitions", type=flag(int, 1, 10_000), default=7, metavar="N", help="timed runs per batch size (default 7)")
    p.add_argument("--warmup", type=flag(int, 0, 10_000), default=2, metavar="N", help="untimed runs first (default 2)")
    p.add_argument("--share-mechanism", choices=SHARE_MECHANISMS, default="auto",
                   help="on a GPU, what limits the kernels: auto (MPS when nvidia-cuda-mps-control is found, "
                        "else a green context), mps, or green-context")
    p.add_argument("--out", metavar="P", help="write the profiles JSON here (default: stdout)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..profiler import ProfileError, ProfileRequest, discover, profile

    folder = Path(args.functions)
    try:
        names = args.names.split(",") if args.names else sorted(discover(folder))
        doc = profile(ProfileRequest(folder, names, args.batch_sizes, args.shares, args.repetitions, args.warmup,
                                             args.share_mechanism),
                      progress=lambda line: print(line, file=sys.stderr, flush=True))
    except ProfileError as err:
        raise LoadError(str(err)) from None
    text = json.dumps(doc, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    failed = doc["measured_by"].get("failed", {})
    for name, reason in failed.items():  # what was measured is written; each failure named, exit 1
        print(f"esg profile: not measured: {reason}", file=sys.stderr)
    return 1 if failed else 0

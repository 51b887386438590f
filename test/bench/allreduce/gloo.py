"""torch.distributed gloo all_reduce, the peer the ring is measured against.

One rank per process; run.mjs starts `world` of them with /usr/bin/python3:

    gloo.py --rank R --world N --port P --sizes 4096,65536 --warmup 5 --repeats 20

Each size: warm-ups, then `repeats` all_reduce(SUM) calls of float32, each timed
on its own. The per-call time reported is the slowest rank's (a MAX all_reduce
of the timings). Rank 0 prints one JSON line per size: {"bytes", "times_ms"}.
"""
import argparse
import json
import time

import torch
import torch.distributed as dist


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--world", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sizes", required=True, help="bytes, comma separated")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args()

    # One compute thread per process: the ring's ranks are single-threaded too, and the
    # machine has as many cores as the benchmark has processes.
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{a.port}", rank=a.rank, world_size=a.world
    )
    for nbytes in (int(s) for s in a.sizes.split(",")):
        buf = torch.full((nbytes // 4,), float(a.rank + 1), dtype=torch.float32)
        want = a.world * (a.world + 1) / 2
        dist.barrier()
        times = []
        for i in range(a.warmup + a.repeats):
            started = time.perf_counter()
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            ms = (time.perf_counter() - started) * 1e3
            if i == 0 and (buf[0].item() != want or buf[-1].item() != want):
                raise SystemExit(f"gloo rank {a.rank}: sum {buf[0].item()}, want {want}")
            if i >= a.warmup:
                times.append(ms)
        slowest = torch.tensor(times, dtype=torch.float64)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        if a.rank == 0:
            print(json.dumps({"bytes": nbytes, "times_ms": slowest.tolist()}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

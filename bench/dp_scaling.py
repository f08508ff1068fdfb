#!/usr/bin/env python3
"""Data-parallel step time on one machine (issue 12): one process with T threads against K ranks of
T/K threads under mpirun, gradients summed during backward (overlap) or after it, per preset.

Each configuration trains the same run (bundled AlpacaEval pairs, same seed, same global batch) for a
few steps with --log-every 1; the step time is pairs / pairs_per_s of each metrics line, and the
all-reduce time the trainer's allreduce_s (the seconds a step spends in gradient communication calls
that did not overlap). Medians over the steps after the first two. Prints one JSON object per
configuration and a summary with the ratios against the one-process baseline measured in the same
invocation.

  python3 bench/dp_scaling.py --presets small base --steps 12 --out bench/results/.../dp.jsonl

With --device cuda (one GPU): one process against `mpirun -np 1`, whose gradients go through the
NCCL path (ncclAllReduce on one rank: the code path and its fixed costs, not a scaling figure).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)


def run(cmd, env=None):
    try:  # bounded: a hung collective must not hold the machine
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    except subprocess.TimeoutExpired as e:
        sys.exit(f"timed out after {e.timeout} s: {' '.join(cmd)}\n{e.stdout or ''}\n{e.stderr or ''}")
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairn", default=os.path.join(root, "build", "cairn"))
    ap.add_argument("--presets", nargs="+", default=["small", "base"])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-pairs", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="cores used by every configuration")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--max-seq-len", type=int, default=256)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--out", help="also append the JSON lines here")
    a = ap.parse_args()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    tmp = tempfile.mkdtemp(prefix="cairn-dp-")
    pairs, tok = os.path.join(tmp, "train.jsonl"), os.path.join(tmp, "tok.model")
    run([a.cairn, "pairs", "--from", "alpaca-eval", "--input", os.path.join(root, "data/alpaca-eval/train.jsonl.gz"),
         "--output", pairs])
    run([a.cairn, "tokenizer", "train", "--input", pairs, "--out", tok, "--vocab-size", "8192"])
    K, T = a.ranks, a.threads
    # (name, ranks, threads per rank, under mpirun, overlap the all-reduce with backward)
    configs = [("1 process x %d threads" % T, 1, T, False, False),
               ("%d ranks x %d threads, overlap" % (K, T // K), K, T // K, True, True),
               ("%d ranks x %d threads, after backward" % (K, T // K), K, T // K, True, False)]
    if a.device == "cuda":
        configs = [("1 process, 1 GPU", 1, T, False, False),
                   ("mpirun -np 1, NCCL, overlap", 1, T, True, True),
                   ("mpirun -np 1, NCCL, after backward", 1, T, True, False)]
    lines = []
    for preset in a.presets:
        base = None
        for i, (name, ranks, threads, mpi, overlap) in enumerate(configs):
            out = os.path.join(tmp, f"{preset}-{i}")
            cmd = [a.cairn, "train", "--train", pairs, "--tokenizer", tok, "--out", out, "--preset", preset,
                   "--max-seq-len", str(a.max_seq_len), "--steps", str(a.steps), "--batch-pairs", str(a.batch_pairs),
                   "--threads", str(threads), "--log-every", "1", "--eval-every", str(10 ** 6),
                   "--save-every", str(10 ** 6), "--seed", "3", "--device", a.device] + ([] if overlap else ["--no-overlap"])
            if mpi:
                cmd = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-np", str(ranks)] + cmd
            run(cmd, env)
            m = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))][2:]
            step = statistics.median(a.batch_pairs / r["pairs_per_s"] for r in m)
            comm = statistics.median(r.get("allreduce_s", 0.0) for r in m)
            rec = {"bench": "dp_step", "preset": preset, "config": name, "ranks": ranks, "threads_per_rank": threads,
                   "device": a.device, "mpi": mpi, "overlap": overlap, "steps_measured": len(m), "batch_pairs": a.batch_pairs,
                   "max_seq_len": a.max_seq_len, "step_s_median": step, "allreduce_s_median": comm,
                   "allreduce_share": comm / step if step else 0.0,
                   "pairs_per_s_median": statistics.median(r["pairs_per_s"] for r in m)}
            if base is None:
                base = step
            rec["speedup_vs_1_process"] = base / step
            lines.append(rec)
            print(json.dumps(rec), flush=True)
    if a.out:
        with open(a.out, "a") as f:
            for r in lines:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()

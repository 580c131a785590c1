#!/usr/bin/env bash
# A GPU profile measured through the functions, in one go, on a machine with
# an NVIDIA GPU and PyTorch built with CUDA (no install: the repository on
# PYTHONPATH). Writes, under OUTDIR:
#   log.txt            the GPU, torch, the share mechanism, and every step's output
#   gpu_share.json     bench/gpu_share.py: model alone against the function, per share
#   profiles-gpu.json  esg profile of every stage (SPEC §1), merged after each stage,
#                      so a run cut short keeps the stages it finished
#
#   bench/gpu_profile.sh OUTDIR
#   (PYTHON=python3, ESG_GPU_SHARE_MECHANISM=green-context by default; mps to use an MPS server)
set -u
OUT=${1:?usage: bench/gpu_profile.sh OUTDIR}
mkdir -p "$OUT" /tmp/esg-gpu-profile
PY=${PYTHON:-python3}
MECH=${ESG_GPU_SHARE_MECHANISM:-green-context}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
LOG=$OUT/log.txt

step() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$LOG"; }

step probe
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu --format=csv
  $PY -c 'import torch; p = torch.cuda.get_device_properties(0); print("torch", torch.__version__, "cuda", torch.version.cuda, p.name, p.multi_processor_count, "SMs")'
  $PY -c 'from torch.cuda import green_contexts as g; print("green contexts:", getattr(g, "SUPPORTED", "?"), [m for m in dir(g.GreenContext) if not m.startswith("_")])'
  command -v nvidia-cuda-mps-control || echo "no nvidia-cuda-mps-control"
} >>"$LOG" 2>&1
tail -n 5 "$LOG"

step "does a green context limit the kernels? (a matrix product on all SMs and on 16)"
$PY - >>"$LOG" 2>&1 <<'EOF'
import contextlib, time, torch
from esg_plugin.runtime.gpu import GreenContextLimit
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
def timed(limit):
    with limit():
        for _ in range(3):
            a @ a
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / 10 * 1000
print(f"bf16 8192^3 product: all SMs {timed(contextlib.nullcontext):.2f} ms, "
      f"16 SMs {timed(GreenContextLimit(torch, 16)):.2f} ms")
EOF
if [ $? -ne 0 ] && [ "$MECH" = green-context ]; then
  echo "green contexts failed here: MPS instead" | tee -a "$LOG"
  nvidia-cuda-mps-control -d >>"$LOG" 2>&1 && MECH=mps
fi
tail -n 3 "$LOG"

step "model alone against the function, per share ($MECH)"
timeout 240 $PY bench/gpu_share.py --mechanism "$MECH" --json "$OUT/gpu_share.json" 2>&1 | tee -a "$LOG"

merge() {
  $PY - "$OUT/profiles-gpu.json" /tmp/esg-gpu-profile/*.json <<'EOF'
import json, sys
out, parts = sys.argv[1], [json.load(open(p)) for p in sys.argv[2:]]
doc = dict(parts[0], functions={})
doc["measured_by"] = dict(parts[0]["measured_by"], command="bench/gpu_profile.sh (esg profile per stage)",
                          paths={}, share_mechanism=", ".join(sorted({p["measured_by"]["share_mechanism"] for p in parts})))
for p in parts:
    doc["functions"].update(p["functions"])
    doc["measured_by"]["paths"].update(p["measured_by"]["paths"])
json.dump(doc, open(out, "w"), indent=1)
print("merged", sorted(doc["functions"]))
EOF
}

profile() {  # NAMES SHARES
  for name in $1; do
    step "esg profile $name at shares $2"
    timeout 200 $PY -m esg_plugin profile --functions functions --names "$name" --batch-sizes 1,2,4,8,16,32 \
      --shares "$2" --repetitions 7 --warmup 2 --share-mechanism "$MECH" \
      --out "/tmp/esg-gpu-profile/$name.json" >>"$LOG" 2>&1 || echo "failed: $name" | tee -a "$LOG"
    merge 2>&1 | tee -a "$LOG"
  done
}

profile "resnet50 espcn resnet18 ssd-mobilenetv2" 10,20,30,50,100
profile "preprocess langid-cnn translator bert-mini aggregator" 20,50,100
step done

#!/usr/bin/env bash
# The GPU session's one script: checks of the CUDA path and throughput beside transformers.
#
# Run from the repository root on a machine with one NVIDIA GPU, where python3 has torch (CUDA) and
# transformers. It reads data prepared beforehand on any machine (it is too slow to prepare there
# within a short lease):
#   benchmarks/.work/{train,heldout}  from `python benchmarks/pretrain_vs_trainer.py prepare`
#   benchmarks/.work/blurb/gad        a copy of the GAD folder of the BLURB data
# Results go to $OUT (default gpu-results/): run.log (every step's output), gpu_check.json, the pretraining metrics.jsonl and
# the fine-tuning metrics.json. Every step has its own time limit, so one hang costs one step only.
#
#   OUT=gpu-results bash benchmarks/gpu_run.sh
#
# MODE=blurb runs instead the complete all-MiniLM-L6-v2 BLURB under the LinkBERT budget (3 seeds), every
# dataset not yet kept under benchmarks/results/all-MiniLM-L6-v2-fp16/linkbert/, with what
# `python benchmarks/blurb_tables.py --pack-for-gpu` wrote (carry benchmarks/.work: the model with fp16
# weights, the BLURB data compressed, seqeval); each dataset comes back under $OUT/results/ as it
# finishes. Copy those dataset folders beside the kept ones and rebuild the table with
#   domainbert report benchmarks/results/all-MiniLM-L6-v2-fp16/linkbert --out (the same folder)
# A lease that ends mid-dataset loses none of its finished runs: the run folders come back under
# $OUT/tables/ (without the runs' saved states, too large to travel); copy that folder to
# benchmarks/.work/gpu-tables and the next call (carrying benchmarks/.work) reuses every finished seed.
#   MODE=blurb OUT=gpu-results bash benchmarks/gpu_run.sh
set -uo pipefail
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
WORK=benchmarks/.work
step() {  # step NAME SECONDS COMMAND...: run with a limit, append to $OUT/run.log, go on either way
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date +%T), limit ${limit}s): $*" | tee -a "$OUT/run.log"
  timeout "$limit" "$@" >> "$OUT/run.log" 2>&1
  echo "=== $name exit $? ($(date +%T))" | tee -a "$OUT/run.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"

if [ "${MODE:-checks}" = blurb ]; then
  export PYTHONPATH=$PWD/$WORK/site:$PYTHONPATH
  mkdir -p /tmp/blurb-data "$OUT/results" && tar -xJf $WORK/blurb-data.tar.xz -C /tmp/blurb-data
  cp -r benchmarks/results/all-MiniLM-L6-v2-fp16 "$OUT/results/" 2>/dev/null  # kept datasets are not rerun
  # three workers per GPU: a 6-layer, 384-wide model leaves most of one GPU idle
  DEVICES=$(python3 -c "import torch; print(','.join(f'cuda:{i}' for i in range(torch.cuda.device_count()) for _ in range(3)))")
  mkdir -p "$OUT/tables" && [ -d $WORK/gpu-tables ] && cp -r $WORK/gpu-tables/. "$OUT/tables/"  # an earlier lease's runs
  step blurb 560 python3 benchmarks/blurb_tables.py --models all-MiniLM-L6-v2-fp16=$WORK/minilm-fp16 \
    --data-dir /tmp/blurb-data --out "$OUT/tables" --keep "$OUT/results" --devices "$DEVICES"
  find "$OUT/tables" \( -name resume.pt -o -name '.resume.pt.tmp-*' \) -delete  # weights + Adam's two moments: ~270 MB for MiniLM
  grep -E '^(===|== |all-MiniLM)' "$OUT/run.log"
  exit 0
fi

step gpu_check 120 python3 benchmarks/gpu_check.py --json "$OUT/gpu_check.json"
step model_step_128 90 python3 benchmarks/model_step.py --device cuda --configs base --batch 128 --seq 128 \
  --steps 10 --rounds 3 --warmup 3 --infer-reps 5
step model_step_512 90 python3 benchmarks/model_step.py --device cuda --configs base --batch 32 --seq 512 \
  --steps 10 --rounds 3 --warmup 3 --infer-reps 5
# The real loop under torchrun on real prepared PubMed data: base shape, the PubMedBERT recipe's
# settings except the batch (256 = one micro-batch) and a 150-step schedule.
rm -rf /tmp/db-pretrain /tmp/db-export /tmp/db-finetune
step pretrain 240 torchrun --standalone --nproc-per-node 1 -m domainbert pretrain \
  --recipe pubmedbert-base --data $WORK/train --eval-data $WORK/heldout \
  --out /tmp/db-pretrain --max-steps 150 --global-batch-size 256 --micro-batch-size 256 --warmup 0.1 \
  --log-every 10 --eval-every 150 --eval-batches 4 --save-every 150 --no-progress
cp /tmp/db-pretrain/metrics.jsonl "$OUT/pretrain_metrics.jsonl" 2>/dev/null
# The same loop on the unpadded path (varlen_attn needs attention dropout off, as cramming trains).
rm -rf /tmp/db-pretrain-unpad
step pretrain_unpad 240 torchrun --standalone --nproc-per-node 1 -m domainbert pretrain \
  --recipe pubmedbert-base --data $WORK/train --out /tmp/db-pretrain-unpad --max-steps 150 \
  --global-batch-size 256 --micro-batch-size 256 --warmup 0.1 --log-every 10 --save-every 150 --no-progress \
  --unpad --set attention_probs_dropout_prob=0
cp /tmp/db-pretrain-unpad/metrics.jsonl "$OUT/pretrain_unpad_metrics.jsonl" 2>/dev/null
step export 30 python3 -m domainbert export --run /tmp/db-pretrain --out /tmp/db-export
step finetune_gad 60 python3 -m domainbert finetune --task gad --data-dir $WORK/blurb --model /tmp/db-export \
  --out /tmp/db-finetune --budget quick --epochs 1
cp /tmp/db-finetune/metrics.json "$OUT/finetune_metrics.json" 2>/dev/null
# Fine-tuning as a GPU without bf16 runs it (fp16 with loss scaling), compiled, with micro-batches.
step finetune_gad_fp16_compile 120 python3 -m domainbert finetune --task gad --data-dir $WORK/blurb \
  --model /tmp/db-export --out /tmp/db-finetune-fp16 --budget quick --epochs 1 --precision fp16 --compile \
  --micro-batch-size 8 --no-save-model
cp /tmp/db-finetune-fp16/metrics.json "$OUT/finetune_fp16_compile_metrics.json" 2>/dev/null
# Last, since compiling can take minutes: the same table with a torch.compile'd variant added.
step model_step_128_compile 150 python3 benchmarks/model_step.py --device cuda --configs base --batch 128 \
  --seq 128 --steps 10 --rounds 3 --warmup 3 --infer-reps 5 --compile
nvidia-smi --query-gpu=name,memory.used,temperature.gpu --format=csv >> "$OUT/nvidia-smi.txt"
echo "=== done $(date +%T)"
grep -E '^(\||PASS|FAIL|===|torch |pretraining|checkpoint|GAD|verifying)' "$OUT/run.log"

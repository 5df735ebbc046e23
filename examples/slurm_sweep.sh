#!/bin/bash
# A d_int90 sweep on a SLURM cluster: one process per GPU, every process the same command.
#
# Submit with `sbatch examples/slurm_sweep.sh`. `srun` starts 16 tasks (2 nodes x 8 GPUs);
# jaxnn sees SLURM's variables (SLURM_JOB_ID, SLURM_STEP_NODELIST, SLURM_NTASKS,
# SLURM_PROCID, SLURM_LOCALID, SLURM_STEP_NUM_TASKS > 1) and calls
# jax.distributed.initialize(), which takes the coordinator (the step's first node, a port
# derived from the job id, or JAX_COORDINATOR_PORT), the process count and id from them,
# and gives each task the GPU numbered SLURM_LOCALID. Every task must see all the node's
# GPUs: ask for them per node (--gpus-per-node), not per task.
#
# --out must be a path process 0 can write; it need not be shared (process 0 alone reads
# and writes it). Rerun the same script after a failure to finish the configs left, on
# any number of nodes.
#SBATCH --job-name=jaxnn-sweep
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=jaxnn-sweep-%j.log

set -euo pipefail

OUT=${OUT:-$HOME/sweeps/mnist_fc_fastfood}

srun jaxnn subspace sweep \
  --dataset mnist --model fc --projection fastfood \
  --dims auto --seeds 3 --steps 2000 \
  --configs-per-program 64 --no-progress \
  --out "$OUT"

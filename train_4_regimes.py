#!/usr/bin/env python
"""The four regimes on one network problem, in one run folder, with a comparison plot per config.

nn: the network itself (lr_nn = lr * N / lambda_max(K_emp)); linearized: its linearisation with sampled batches
(mean of --repeats paths); sd: the spectral-diagonal approximation, once per --tau; full: the exact
batch-averaged second moments of the linearisation.

Defaults (the main job; README states its measured time): digits, N = 256, width 512, lr 1, momentum 0 and -0.3,
batch sizes 8 and 32, 1000 steps, the network and the linearized model averaged over 8 paths, SD with tau = 1
and -1.

Example (the paper's headline comparison):
    python train_4_regimes.py --dataset mnist --data_root ../shared/data --N 1000 --width 1000 \\
        --lr 1.0 --momentum 0 -0.3 --batch_size 10 100 --n_steps 2000 --repeats 20 --tau 1 -1
"""
from gfsgd.network_cli import network_main

if __name__ == "__main__":
    network_main(["nn", "linearized", "sd", "full"], script="train_4_regimes", choose_regimes=True,
                 description="The four regimes (network, linearized, SD, exact) on one network problem.",
                 defaults=dict(dataset="digits", N=256, width=512, lr=[1.0], momentum=[0.0, -0.3],
                               batch_size=[8, 32], n_steps=1000, repeats=8, tau=[1.0, -1.0]))

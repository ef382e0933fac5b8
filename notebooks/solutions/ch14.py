"""Worked solutions to the exercises of chapter 14, how fast, really.

Each name matches an answer cell in ``notebooks/14_how_fast_really.ipynb``; for example
``print(ch14.check_mqa_intensity(answer_mqa_intensity))`` passes with the value below.
"""

from __future__ import annotations

from attnlab import bench, costs

shape, context, b = bench.DEFAULT_SHAPE, 8192, 4  # float32: 4 bytes per number
d, n_h, d_h = shape.d_model, shape.n_heads, shape.head_dim

# Exercise 1. MQA: one key head and one value head. Weights W^Q, W^K, W^V, W^O:
W = d * n_h * d_h + 2 * d * 1 * d_h + n_h * d_h * d  # 2,228,224 numbers
T = context + 1  # the new token attends to the L cached tokens and to itself
flops = 2 * W + 4 * n_h * d_h * T  # apply every weight once; score and mix, every query head
n_bytes = b * (W + 2 * d_h * T)  # read the weights and the one cached K and V head, once each
answer_mqa_intensity = flops / n_bytes  # about 2.90 FLOP/byte

# Exercise 2. Compare each scheme's FLOPs / bytes with the balance, 4 FLOP/byte.
balance = 4.0
answer_bounds = {
    s: "memory" if costs.arithmetic_intensity(s, shape, context, "float32") < balance else "compute"
    for s in bench.SCHEMES
}  # MLA naive (45 FLOP/B) and MLA absorbed (6.4 FLOP/B) are compute-bound; MHA, GQA, MQA and DSA are not

# Exercise 3. Absorbed MLA's intensity grows with L (every head reads the same latent): walk L up until it
# reaches the balance. (Solving the linear inequality for T gives the same number.)
L = 1
while costs.arithmetic_intensity("mla_absorbed", shape, L, "float32") < balance:
    L += 1
answer_crossover = L  # 3,763

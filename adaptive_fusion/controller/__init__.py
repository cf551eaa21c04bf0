"""The learned layer controller (ROS-free): which (modality, block) slots of the frozen detector
run for a frame, given cheap views of its inputs, the measured sensor quality, the live sensors
and a budget in GFLOPs or milliseconds.

- costs: CostTable (per-block and fixed costs), flop_cost_table, measure_cost_table, block_budget
- selection: select_slots (deployed) and straight_through_gates (training)
- network: LayerController; labels: corruption labels and loss; checkpoint: save/load
- policy: LearnedAllocator (allocate(inputs, quality, live, budget))
- config, data, trainer: `adaptive-fusion train-controller`
"""

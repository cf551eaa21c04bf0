"""The learned layer controller (ROS-free): which (modality, block) slots of the frozen detector
run for a frame, given cheap views of its inputs, the measured sensor quality, the live sensors
and a budget in GFLOPs or milliseconds.

- costs: CostTable (per-block and fixed costs), flop_cost_table, measure_cost_table, block_budget
- selection: modalities_to_run + select_slots (deployed); straight_through_use and
  straight_through_gates (training)
- network: LayerController; labels: corruption labels and loss; checkpoint: save/load
- usage: whether switching a live sensor off helps (the use head's target and loss)
- policy: LearnedAllocator (allocate(inputs, quality, live, budget))
- config, data, trainer: `adaptive-fusion train-controller`
"""

"""The allocation policies a node loads (ROS-free): which (modality, block) slots of the frozen
detector run for a frame, given the measured sensor quality, the live sensors and a budget.

- costs: CostTable (per-block and fixed costs), flop_cost_table, measure_cost_table, block_budget
- network: LayerController (ADMN); gate: ModalityGate and its menu of paths (DynMM);
  checkpoint: save/load of both
- selection: modalities_to_run + select_slots (deployed); straight_through_use and
  straight_through_gates (training)
- learned: LearnedAllocator and GateAllocator (allocate(inputs, quality, live, budget))
- registry: the rule policies (equal split, quality weighted), the learned ones, make_policy
"""

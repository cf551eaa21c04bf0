"""The hardware-aware architecture search over the supernet (issue 35): the cost of every
elastic unit measured on this machine and a subnet's as their sum (costs.py), the genome as
pymoo's integer vector (genome.py), NSGA-II with its archive, the front and the pick (nsga.py),
and the front's plot (plot.py)."""

"""``trevo evolve``: a multi-objective architecture search over genomes of trevo's components (STAR,
arXiv 2411.17800; NSGA-II, Deb et al. 2002), every evaluation an arena run, with a random-search control
and a fitness ladder that ends in a paired comparison with the Transformer++ baseline."""

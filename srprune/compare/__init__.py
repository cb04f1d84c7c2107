"""``srprune compare``: criteria x strategies x ratios x seeds, compressed, fine-tuned at one
budget, evaluated and benchmarked together, with tables, plots and a verdict per ratio.

* :mod:`~srprune.compare.grid`: the grid's settings (:class:`GridSpec`), its cells, the
  command line that reproduces a cell, and what a stored grid must match to be resumed;
* :mod:`~srprune.compare.cell`: one cell's work (compress, fine-tune, evaluate, artifact);
* :mod:`~srprune.compare.store`: the files of a grid folder (atomic JSON, the stored spec);
* :mod:`~srprune.compare.runner`: pending cells on local processes or Ray tasks;
* :mod:`~srprune.compare.latency`: the one interleaved ORT benchmark of every artifact;
* :mod:`~srprune.compare.stats`: means and spreads over seeds, the Pareto front;
* :mod:`~srprune.compare.verdict`: which method wins each ratio, by how much, how surely;
* :mod:`~srprune.compare.report`: results.json/csv, table.md, plots and report.html.
"""

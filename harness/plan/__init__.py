"""From a composed job to a planned ``Cell``: matrix expansion, cell ids and content keys,
the model source, derivation steps and feasibility verdict, the worker's interpreter, and
the ``plan=true`` table. A cell is planned once; its plan travels to the job as a file."""

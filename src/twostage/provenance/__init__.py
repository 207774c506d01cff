"""What made each result: the code a job runs (``codedeps``), the installed packages
(``software``), the hashes both tools compare (``versions``), and the outputs DVC restored
that Snakemake is told about (``adopt``). Bookkeeping only: no module here computes a
number of any stage, and none imports the domain packages (``tests/test_layers.py``)."""

"""The console programs: ``memc-interpolate`` (:mod:`.interpolate`), ``memc-eval``
(:mod:`.evaluate`) and ``memc-train`` (:mod:`.train`), with what only they need (:mod:`.common`:
options and :func:`~memc_models.cli.common.run`). They are built on the library in
:mod:`memc_models` and never import one another."""

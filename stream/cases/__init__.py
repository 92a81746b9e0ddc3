"""Flagged cases: where they are stored, how the job writes them, and the analysts' command.

- :mod:`stream.cases.store`  the Bigtable layout (row keys, families) and :class:`~stream.cases.store.CaseStore`,
  the one place that reads and writes cases; imports no Beam, so ``fraudscore cases`` starts fast;
- :mod:`stream.cases.sink`   ``DeliverCases``, the Beam step writing the job's cases through the store and
  alerting once per case (``WriteCases``: rows only);
- :mod:`stream.cases.cli`    ``fraudscore cases list/get/label``.

The record itself, :class:`stream.records.Case`, lives with the job's other records at the bottom
of ``stream/`` (the pipeline creates it, the store and the alert sink serialize it).
"""

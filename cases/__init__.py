"""Flagged cases: the records, where they are stored, the analysts' labels and command.

A package of its own, below the services: the stream job writes cases through it, the trainer reads
labels through it, a console can read and decide through it; it imports no service package.

- :mod:`cases.records`    :class:`~cases.records.Case`, :class:`~cases.records.Decision`,
  :class:`~cases.records.StoredCase` (standard library only);
- :mod:`cases.store`      the Bigtable layout (row keys, families) and :class:`~cases.store.CaseStore`,
  the one place that reads and writes cases; imports no Beam, so ``fraudscore cases`` starts fast;
- :mod:`cases.row_writes` conditional and bulk Bigtable writes as plain protobuf;
- :mod:`cases.labels`     labelled cases and the traffic sample as arrays for the trainer;
- :mod:`cases.cli`        ``fraudscore cases list/get/label``.

The job's Beam steps that write through the store live in the stream: :mod:`stream.case_sink`
(``DeliverCases``) and :mod:`stream.sample_sink` (``WriteSample``).
"""

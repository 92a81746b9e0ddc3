"""Development tools: local emulators, the demo, the data generator and the publisher.

Used by ``make run``, the tests, the benchmarks and by hand (``fraudscore emulators``, ``demo``,
``generate``, ``publish``); never by the runtime packages (``fraudscore`` core, ``trainer``,
``scorer``, ``stream``), which ``tests/unit/test_architecture.py`` checks.
"""

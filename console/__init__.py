"""The analysts' case console in the browser (``fraudscore console``).

- :mod:`console.config`   flags and env -> :class:`~console.config.ConsoleConfig` (the token read as the scorer's);
- :mod:`console.queue`    every case in memory, by priority, rescanned in the background; pages and filters;
- :mod:`console.models`   model cards per version: normal ranges beside a member's values, the current version;
- :mod:`console.overview` cases opened per hour and labelled precision per day, as an SVG chart;
- :mod:`console.app`      the Flask app: login, queue, case page, decisions, overview;
- :mod:`console.cli`      serves it with waitress.

Reads and decisions go through :class:`cases.casebook.Casebook`, the code ``fraudscore cases`` runs.
"""

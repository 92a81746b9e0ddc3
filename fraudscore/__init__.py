"""fraudscore: streaming fraud scoring for card transactions.

Shared by the trainer, the scorer and the stream:

- :mod:`fraudscore.features`  feature names and the raw file schema
- :mod:`fraudscore.schema`    parsing and validating transactions
- :mod:`fraudscore.model`     the model artifact contract and loader
- :mod:`fraudscore.config`    typed configuration
- :mod:`fraudscore.v1`        generated protobuf / gRPC code (``make protos``)
"""

from fraudscore.schema import InvalidTransaction

__all__ = ["InvalidTransaction"]
__version__ = "0.1.0"

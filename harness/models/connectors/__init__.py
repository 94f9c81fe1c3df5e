"""Vision-language connectors: ``[B, N, D_enc] -> [B, M, D_llm]``, one module per registry name.

Importing this package imports every connector module, which is what registers it in ``CONNECTORS``; code that
builds a connector by name must import ``harness.models.connectors`` (not only ``.base``).
"""

from harness.models.connectors import attn_pool, avg_pool, c_abstractor, llava, mining, qformer  # noqa: F401
from harness.models.connectors.base import (
    CONNECTORS,
    Connector,
    ConnectorCfg,
    FeatureMapSpec,
    FeatureSpec,
    build_connector,
)

__all__ = ["CONNECTORS", "Connector", "ConnectorCfg", "FeatureMapSpec", "FeatureSpec", "build_connector"]

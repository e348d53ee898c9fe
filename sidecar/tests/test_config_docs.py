"""Every key of the sidecar's config file, nested ones included, is in docs/sidecar.md."""

from pathlib import Path

from pydantic import BaseModel

from agentcom_common.risk import PathRule, RiskRules
from agentcom_sidecar.config import (
    PrepublishConfig,
    RepoConfig,
    ReviewConfig,
    ScanAllow,
    SidecarConfig,
)

PAGE = Path(__file__).resolve().parents[2] / "docs" / "sidecar.md"


def test_every_config_key_is_documented() -> None:
    page = PAGE.read_text()
    models: list[type[BaseModel]] = [
        SidecarConfig,
        RepoConfig,
        ScanAllow,
        PrepublishConfig,
        ReviewConfig,
        RiskRules,
        PathRule,
    ]
    missing = [
        f"{model.__name__}.{name}"
        for model in models
        for name in model.model_fields
        if name != "path" and f"`{name}`" not in page
    ]
    assert not missing, f"not in docs/sidecar.md: {missing}"

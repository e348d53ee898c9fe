from agentcom_common import migrations
from agentcom_llm_registry import tables

migrations.run_env(tables.metadata)

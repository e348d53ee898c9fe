from agentcom_common import migrations
from agentcom_scheduler import tables

migrations.run_env(tables.metadata)

from agentcom_common import migrations
from agentcom_dashboard import tables

migrations.run_env(tables.metadata)

from agentcom_common import migrations
from agentcom_queue import tables

migrations.run_env(tables.metadata)

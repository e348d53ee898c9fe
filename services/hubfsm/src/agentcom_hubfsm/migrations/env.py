from agentcom_common import migrations
from agentcom_hubfsm import tables

migrations.run_env(tables.metadata)

from agentcom_common import backups, migrations

migrations.run_env(backups.metadata)
